//! A binary's command line, parsed by clap with its refusals masked.
//!
//! clap quotes the argument it refuses (`invalid value '…' for '<CARD>'`,
//! `unexpected argument '…' found`), and an admin command's standard error ends up in
//! cron mail and the system journal. A card number typed in the wrong place, or with
//! a stray character, must not: every run of six or more digits in a refusal is
//! masked, as in every other error of both binaries. Help and version output quote
//! nothing typed and are printed as clap writes them.

use protocol::ids::redact_card_numbers;

/// Why the command line did not parse, or what to print instead of running (help,
/// version).
#[derive(Debug)]
pub struct Refusal {
    /// What to print, masked when it is an error.
    pub text: String,
    /// Whether it goes to standard error (an error) or standard output (help).
    pub to_stderr: bool,
    /// clap's exit code: 2 for a usage error, 0 for help and version.
    pub exit_code: i32,
}

/// Parses `args` (the program name first) into `C`.
pub fn try_parse_from<C, I, T>(args: I) -> Result<C, Refusal>
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    C::try_parse_from(args).map_err(|e| {
        let to_stderr = e.use_stderr();
        let text = e.render().to_string();
        Refusal {
            text: if to_stderr {
                redact_card_numbers(&text)
            } else {
                text
            },
            to_stderr,
            exit_code: e.exit_code(),
        }
    })
}

/// Parses the process's own arguments into `C`; on a refusal prints it and exits
/// with clap's code, as `clap::Parser::parse` does.
pub fn parse<C: clap::Parser>() -> C {
    try_parse_from(std::env::args_os()).unwrap_or_else(|refusal: Refusal| {
        if refusal.to_stderr {
            eprint!("{}", refusal.text);
        } else {
            print!("{}", refusal.text);
        }
        std::process::exit(refusal.exit_code)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        /// A card number: digits only.
        #[arg(value_parser = digits)]
        card: String,
        #[arg(long, default_value_t = 1_048_576)]
        limit: u64,
    }

    fn digits(s: &str) -> Result<String, String> {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(s.to_owned())
        } else {
            Err("card id must be 6 to 19 digits".into())
        }
    }

    const CARD: &str = "4006381333931";

    #[test]
    fn a_refused_value_is_named_masked() {
        let r = try_parse_from::<Cli, _, _>(["x", &format!("{CARD}x")]).unwrap_err();
        assert!(r.to_stderr && r.exit_code == 2, "{r:?}");
        assert!(r.text.contains("****3931x"), "{}", r.text);
        assert!(!r.text.contains(CARD), "{}", r.text);
        assert!(
            r.text.contains("6 to 19 digits"),
            "the reason stays: {}",
            r.text
        );
    }

    #[test]
    fn an_unexpected_argument_is_named_masked() {
        let r = try_parse_from::<Cli, _, _>(["x", "123", CARD]).unwrap_err();
        assert!(r.to_stderr && r.exit_code == 2, "{r:?}");
        assert!(
            r.text.contains("****3931") && !r.text.contains(CARD),
            "{}",
            r.text
        );
    }

    #[test]
    fn help_is_printed_as_clap_writes_it() {
        let r = try_parse_from::<Cli, _, _>(["x", "--help"]).unwrap_err();
        assert!(!r.to_stderr && r.exit_code == 0, "{r:?}");
        assert!(
            r.text.contains("1048576"),
            "defaults are not masked: {}",
            r.text
        );
    }

    #[test]
    fn good_arguments_parse() {
        let cli: Cli = try_parse_from(["x", CARD, "--limit", "7"]).unwrap();
        assert_eq!((cli.card.as_str(), cli.limit), (CARD, 7));
    }
}
