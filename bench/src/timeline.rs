//! Each push's due, sent and answered times, written as CSV when
//! `POS_BENCH_PUSH_TIMELINE` names a directory: to see when slow pushes cluster and
//! line them up with what the server did then (docs/performance.md, *The 50 % tail
//! with the event-loop generator*).

use crate::push_tills::{Generated, Sent};
use std::io::Write;
use std::path::Path;

/// The variable naming the directory the timelines go to.
const VAR: &str = "POS_BENCH_PUSH_TIMELINE";

/// Writes `pushes` to `$POS_BENCH_PUSH_TIMELINE/<run>.csv` (`run` the last part of the
/// run's directory, e.g. `push-paced50`), if the variable is set; columns `till`,
/// `due_us`, `sent_us`, `answered_us`, from the start of the load; and the start's
/// time since the Unix epoch (µs) in `<run>.start`.
pub fn write_if_asked(run_dir: &Path, generated: &Generated) -> anyhow::Result<()> {
    let Some(out) = std::env::var_os(VAR) else {
        return Ok(());
    };
    let name = run_dir
        .file_name()
        .map_or_else(|| "push".into(), |n| n.to_string_lossy().into_owned());
    let out = Path::new(&out);
    std::fs::create_dir_all(out)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(out.join(format!("{name}.csv")))?);
    write(&mut file, &generated.pushes)?;
    file.flush()?;
    // The start in microseconds since the Unix epoch, beside it.
    let start = generated
        .started_at
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros();
    std::fs::write(out.join(format!("{name}.start")), format!("{start}\n"))?;
    Ok(())
}

/// The CSV of `pushes`, sorted by due time.
fn write(out: &mut impl Write, pushes: &[Sent]) -> std::io::Result<()> {
    let mut pushes = pushes.to_vec();
    pushes.sort_by_key(|p| p.due);
    writeln!(out, "till,due_us,sent_us,answered_us")?;
    for p in pushes {
        writeln!(
            out,
            "{},{},{},{}",
            p.till,
            p.due.as_micros(),
            p.sent.as_micros(),
            p.answered.as_micros()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_timeline_is_sorted_by_due_time_in_microseconds() {
        let ms = Duration::from_millis;
        let push = |till, due, sent, answered| Sent {
            till,
            due: ms(due),
            sent: ms(sent),
            answered: ms(answered),
        };
        let mut out = Vec::new();
        write(&mut out, &[push(1, 5, 6, 9), push(0, 2, 2, 4)]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "till,due_us,sent_us,answered_us\n0,2000,2000,4000\n1,5000,6000,9000\n"
        );
    }
}
