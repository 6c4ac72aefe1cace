//! The README runs: its fenced blocks are executed in order against the real
//! binaries, and what it shows is what they print.
//!
//! - ```` ```console ```` blocks are transcripts: `$ command` (continued by `> ` lines)
//!   followed by the output the README promises (stdout and stderr together). In the
//!   expected output `[..]` stands for any text within a line and a line `...` for any
//!   number of lines (times, ids, tokens). The exit status is not compared: the output
//!   shows the outcome.
//! - ```` ```sh ```` and ```` ```bash ```` blocks run as a whole and must exit 0
//!   (`set -e -o pipefail`).
//! - ```` ```toml ```` blocks are config snippets: each is checked with the `check-config`
//!   of the binary it configures (`pos-agent`, `sync-server`) or loaded with
//!   `sync-server rules set` (a rules file); an info word `agent`, `sync-server` or
//!   `rules` says which, otherwise the tables it names decide.
//! - A block whose info string holds `no-run` is skipped; other languages are prose.
//!
//! Every block runs in one bash session (variables, `cd` and background servers carry
//! over) in a temp dir holding a copy of `config/examples/`, with the binaries first
//! on `PATH` and in `$B`, `HOME` in the temp dir (so a default database lands there),
//! and these rewrites of the README's
//! text, undone in the output before it is compared: `/tmp/` is the temp dir, HQ's
//! `127.0.0.1:8080` and the till API's `127.0.0.1:7070` are free ports.
//!
//! Every file in `config/examples/` is checked the same way as a toml block.

// clippy.toml allows unwrap inside #[test] functions only; the harness functions here
// are test code too.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const README: &str = include_str!("../README.md");

/// Longest a single command or block may run; one that never ends (a stream, a
/// server in the foreground) must be marked `no-run`.
const HANG: Duration = Duration::from_secs(120);

/// A fenced block of the README.
#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    lang: String,
    flags: Vec<String>,
    body: Vec<String>,
}

impl Block {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match open.take() {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    let mut words = info.split_whitespace().map(str::to_owned);
                    open = Some(Block {
                        line: i + 1,
                        lang: words.next().unwrap_or_default(),
                        flags: words.collect(),
                        body: Vec::new(),
                    });
                }
            }
            Some(mut block) => {
                if line.trim_end() == "```" {
                    out.push(block);
                } else {
                    block.body.push(line.to_owned());
                    open = Some(block);
                }
            }
        }
    }
    assert!(open.is_none(), "README.md: a fenced block is never closed");
    out
}

/// One `$` command of a console block and the output shown after it.
#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn steps(block: &Block) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for (i, line) in block.body.iter().enumerate() {
        let at = block.line + 1 + i;
        if let Some(command) = line.strip_prefix("$ ") {
            out.push(Step {
                line: at,
                command: command.to_owned(),
                expected: Vec::new(),
            });
            continue;
        }
        let Some(step) = out.last_mut() else {
            panic!("README.md:{at}: a console block must start with a `$ ` command line");
        };
        match line.strip_prefix("> ") {
            Some(more) if step.expected.is_empty() => {
                step.command.push('\n');
                step.command.push_str(more);
            }
            _ => step.expected.push(line.clone()),
        }
    }
    out
}

/// `line` matches `pattern`, where `[..]` stands for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let pieces: Vec<&str> = pattern.split("[..]").collect();
    let [first, middle @ .., last] = pieces.as_slice() else {
        return pattern == line;
    };
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// `lines` match `pattern`, where a pattern line `...` stands for any lines.
fn lines_match(pattern: &[String], lines: &[&str]) -> bool {
    match pattern.split_first() {
        None => lines.is_empty(),
        Some((p, rest)) if p == "..." => {
            (0..=lines.len()).any(|skip| lines_match(rest, &lines[skip..]))
        }
        Some((p, rest)) => lines
            .split_first()
            .is_some_and(|(l, more)| line_matches(p, l) && lines_match(rest, more)),
    }
}

/// What the README's text becomes for the run, and back.
struct Rewrites(Vec<(String, String)>);

impl Rewrites {
    fn to_run(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_owned(), |t, (readme, run)| t.replace(readme, run))
    }

    fn to_readme(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_owned(), |t, (readme, run)| t.replace(run, readme))
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A bash session in its own process group; dropping it ends the group (the servers
/// the README starts in the background with it).
struct Shell {
    child: Child,
    stdin: ChildStdin,
    done: mpsc::Receiver<String>,
    dir: PathBuf,
    count: usize,
}

impl Shell {
    fn start(dir: &Path, bin_dir: &Path) -> Self {
        let home = dir.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = std::os::unix::process::CommandExt::process_group(
            Command::new("bash")
                .args(["--noprofile", "--norc"])
                .current_dir(dir)
                .env("PATH", path)
                .env("B", bin_dir)
                .env("HOME", &home)
                .env_remove("XDG_DATA_HOME")
                .env_remove("XDG_CONFIG_HOME")
                .env_remove("LOYALTY_CLOCK_OFFSET_SECS")
                .env_remove("RUST_LOG")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
            0,
        )
        .spawn()
        .expect("bash");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let scripts = dir.join(".readme");
        std::fs::create_dir_all(&scripts).unwrap();
        Self {
            child,
            stdin,
            done,
            dir: scripts,
            count: 0,
        }
    }

    /// Runs `script` in the session (`strict`: under `set -e -o pipefail`); returns
    /// its exit status (`None`: it ended the session) and its output.
    fn run(&mut self, script: &str, strict: bool) -> (Option<i32>, String) {
        self.count += 1;
        let file = self.dir.join(format!("{}.sh", self.count));
        let out = self.dir.join(format!("{}.out", self.count));
        std::fs::write(&file, script).unwrap();
        let (on, off) = if strict {
            ("set -e -o pipefail; ", "; set +e +o pipefail")
        } else {
            ("", "")
        };
        let line = format!(
            "{on}source {} > {} 2>&1 < /dev/null{off}; echo \"@@status $?\"\n",
            file.display(),
            out.display()
        );
        let status = if self.stdin.write_all(line.as_bytes()).is_ok() {
            match self.done.recv_timeout(HANG) {
                Ok(line) => line.strip_prefix("@@status ").and_then(|s| s.parse().ok()),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("still running after {HANG:?}: mark a command that never ends `no-run`")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            }
        } else {
            None
        };
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        (status, text)
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = self.child.wait();
    }
}

/// Which file a toml snippet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfigKind {
    Agent,
    Server,
    Rules,
}

const AGENT_TABLES: &[&str] = &[
    "store", "till_api", "journal", "sync", "offline", "limits", "scanner", "program",
];

fn kind_of(block: &Block) -> ConfigKind {
    for (word, kind) in [
        ("agent", ConfigKind::Agent),
        ("sync-server", ConfigKind::Server),
        ("rules", ConfigKind::Rules),
    ] {
        if block.has(word) {
            return kind;
        }
    }
    let tables: Vec<&str> = block
        .body
        .iter()
        .filter_map(|l| l.trim().strip_prefix('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']' || c == ' '))
        .collect();
    if tables.iter().any(|t| AGENT_TABLES.contains(t)) {
        ConfigKind::Agent
    } else if tables.iter().any(|t| ["tier", "promotion"].contains(t)) {
        ConfigKind::Rules
    } else {
        ConfigKind::Server
    }
}

/// Checks a config file in `dir` with the binary it configures; the error text on
/// refusal.
fn check_config(kind: ConfigKind, file: &Path, dir: &Path) -> Result<(), String> {
    let mut cmd = match kind {
        ConfigKind::Agent => {
            let mut c = Command::new(testkit::bin("pos-agent"));
            c.arg("check-config").arg(file);
            c
        }
        ConfigKind::Server => {
            let mut c = Command::new(testkit::bin("sync-server"));
            c.arg("check-config").arg(file);
            c
        }
        ConfigKind::Rules => {
            let mut c = Command::new(testkit::bin("sync-server"));
            let db = format!("sqlite:{}", dir.join("rules-check.db").display());
            c.args(["--database", &db, "rules", "set"]).arg(file);
            c
        }
    };
    let out = cmd.current_dir(dir).output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A toml snippet as a whole file: an agent snippet without `[store]` gets one after
/// it (so the snippet's lines keep their numbers).
fn snippet_file(kind: ConfigKind, body: &[String]) -> String {
    let mut text = body.join("\n");
    text.push('\n');
    if kind == ConfigKind::Agent && !body.iter().any(|l| l.trim() == "[store]") {
        text.push_str("\n[store]\nstore_id = \"store-1\"\nterminal_id = \"till-1\"\n");
    }
    text
}

fn check_snippet(block: &Block, dir: &Path) -> Result<(), String> {
    let kind = kind_of(block);
    let sub = dir.join(format!("snippet-{}", block.line));
    std::fs::create_dir_all(&sub).unwrap();
    let name = match kind {
        ConfigKind::Agent => "agent.toml",
        ConfigKind::Server => "sync-server.toml",
        ConfigKind::Rules => "rules.toml",
    };
    let file = sub.join(name);
    std::fs::write(&file, snippet_file(kind, &block.body)).unwrap();
    check_config(kind, &file, &sub).map_err(|e| {
        format!(
            "README.md:{}: this toml block, checked as {name} (the line numbers are the block's), is refused:\n{e}",
            block.line
        )
    })
}

fn mismatch(step: &Step, actual: &str) -> String {
    format!(
        "README.md:{}: `$ {}` printed something else than the README shows.\n--- README.md:{}..\n{}\n--- actual\n{}\n---",
        step.line,
        step.command.replace('\n', "\n> "),
        step.line + 1,
        step.expected.join("\n"),
        actual
    )
}

#[test]
fn every_block_of_the_readme_runs_and_prints_what_it_shows() {
    let dir = testkit::temp_dir();
    let root = dir.path().canonicalize().unwrap();
    let bin_dir = testkit::bin("pos-agent")
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap();
    let rewrites = Rewrites(vec![
        (
            "127.0.0.1:8080".to_owned(),
            format!("127.0.0.1:{}", free_port()),
        ),
        (
            "127.0.0.1:7070".to_owned(),
            format!("127.0.0.1:{}", free_port()),
        ),
        ("/tmp/".to_owned(), format!("{}/", root.display())),
    ]);
    // The README's commands run from the repository root; what they read of it (the
    // example configs) is copied, so that nothing they write lands in the checkout.
    let examples = root.join("config/examples");
    std::fs::create_dir_all(&examples).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, examples.join(path.file_name().unwrap())).unwrap();
    }
    let mut shell = Shell::start(&root, &bin_dir);
    let mut ran = 0;
    for block in blocks(README) {
        if block.has("no-run") {
            continue;
        }
        match block.lang.as_str() {
            "console" => {
                for step in steps(&block) {
                    let (status, out) = shell.run(&rewrites.to_run(&step.command), false);
                    assert!(
                        status.is_some(),
                        "README.md:{}: `$ {}` ended the shell:\n{out}",
                        step.line,
                        step.command
                    );
                    let actual = rewrites.to_readme(&out);
                    let lines: Vec<&str> = actual.trim_end().lines().map(str::trim_end).collect();
                    let expected: Vec<String> = step
                        .expected
                        .iter()
                        .map(|l| l.trim_end().to_owned())
                        .collect();
                    let expected = match expected.iter().rposition(|l| !l.is_empty()) {
                        Some(last) => expected[..=last].to_vec(),
                        None => Vec::new(),
                    };
                    assert!(
                        lines_match(&expected, &lines),
                        "{}",
                        mismatch(&step, &actual)
                    );
                    ran += 1;
                }
            }
            "sh" | "bash" => {
                let script = rewrites.to_run(&block.body.join("\n"));
                let (status, out) = shell.run(&script, true);
                assert_eq!(
                    status,
                    Some(0),
                    "README.md:{}: this {} block failed (exit status {status:?}):\n{}",
                    block.line,
                    block.lang,
                    rewrites.to_readme(&out)
                );
                ran += 1;
            }
            "toml" => {
                if let Err(e) = check_snippet(&block, &root) {
                    panic!("{e}");
                }
                ran += 1;
            }
            _ => {}
        }
    }
    assert!(ran > 10, "only {ran} README blocks ran");
}

#[test]
fn every_example_config_passes_check_config() {
    let dir = testkit::temp_dir();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let kind = match name.as_str() {
            "agent.toml" => ConfigKind::Agent,
            "sync-server.toml" => ConfigKind::Server,
            "rules.toml" => ConfigKind::Rules,
            other => panic!("config/examples/{other}: which binary reads it? (add it here)"),
        };
        let sub = dir.path().join(&name);
        std::fs::create_dir_all(&sub).unwrap();
        let file = sub.join(&name);
        std::fs::copy(&path, &file).unwrap();
        if kind == ConfigKind::Agent {
            // The secrets it names: the token `sync-server terminal add` prints and
            // HQ's CA certificate (the README's quick start makes the token).
            std::fs::write(sub.join("terminal.token"), "lt_example\n").unwrap();
            std::fs::write(sub.join("hq-ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        }
        if let Err(e) = check_config(kind, &file, &sub) {
            panic!("config/examples/{name} is refused:\n{e}");
        }
        checked.push(name);
    }
    checked.sort();
    assert_eq!(checked, ["agent.toml", "rules.toml", "sync-server.toml"]);
}

#[test]
fn a_transcript_matches_only_what_it_shows() {
    let p = |lines: &[&str]| lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
    assert!(lines_match(&p(&["ok"]), &["ok"]));
    assert!(!lines_match(&p(&["ok"]), &["ok", "more"]));
    assert!(!lines_match(&p(&["balance 20"]), &["balance 21"]));
    assert!(lines_match(
        &p(&["{\"as_of\":\"[..]\",\"n\":1}"]),
        &["{\"as_of\":\"2026-11-30T21:00:00Z\",\"n\":1}"]
    ));
    assert!(!lines_match(
        &p(&["{\"as_of\":\"[..]\",\"n\":1}"]),
        &["{\"as_of\":\"2026-11-30T21:00:00Z\",\"n\":2}"]
    ));
    assert!(lines_match(&p(&["a", "...", "z"]), &["a", "b", "c", "z"]));
    assert!(lines_match(&p(&["a", "...", "z"]), &["a", "z"]));
    assert!(!lines_match(&p(&["a", "...", "z"]), &["a", "b"]));
    assert!(
        !line_matches("ab[..]ba", "aba"),
        "prefix and suffix may not overlap"
    );
}

#[test]
fn console_blocks_split_into_commands_continuations_and_output() {
    let block = &blocks("text\n```console\n$ echo a \\\n> b\na b\n$ true\n```\n")[0];
    assert_eq!(block.line, 2);
    let s = steps(block);
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].line, s[0].command.as_str()), (3, "echo a \\\nb"));
    assert_eq!(s[0].expected, ["a b"]);
    assert!(s[1].expected.is_empty());
    let flagged = &blocks("```sh no-run\ncargo run\n```\n")[0];
    assert!(flagged.has("no-run") && flagged.lang == "sh");
}
