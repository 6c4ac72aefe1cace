//! CPU time of processes, from `/proc` (Linux): what a figure cost in core-seconds,
//! so that a throughput can be stated per core of the process that did the work.

use anyhow::Context;

/// Clock ticks per second of `/proc/*/stat`'s times: `USER_HZ`, 100 on every Linux
/// architecture the kernel exports to user space.
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds (user + system, all threads) used so far by process `pid`.
pub fn process_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok(stat_times(&stat)?.1)
}

/// CPU seconds (user + system) used so far by the calling thread.
pub fn thread_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .context("reading /proc/thread-self/stat")?;
    Ok(stat_times(&stat)?.1)
}

/// CPU seconds used so far by every process named `postgres` on this machine: the
/// PostgreSQL server's backends, writers and checkpointer. A backend that exited
/// during a measurement takes its time with it, so measure while the pool is open.
pub fn postgres_seconds() -> anyhow::Result<f64> {
    let mut total = 0.0;
    for dir in std::fs::read_dir("/proc")? {
        let dir = dir?;
        if !dir
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        // A process may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(dir.path().join("stat")) else {
            continue;
        };
        let (comm, seconds) = stat_times(&stat)?;
        if comm == "postgres" {
            total += seconds;
        }
    }
    Ok(total)
}

/// The command name and the user + system seconds of one `/proc/PID/stat` line.
fn stat_times(stat: &str) -> anyhow::Result<(&str, f64)> {
    // The name is in parentheses and may itself hold spaces or parentheses.
    let (head, rest) = stat.rsplit_once(") ").context("bad /proc stat line")?;
    let comm = head.split_once(" (").context("bad /proc stat line")?.1;
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime: fields 14 and 15 of proc(5), counted here after the name.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc stat line")?.parse()?)
    };
    Ok((comm, (ticks(11)? + ticks(12)?) as f64 / TICKS_PER_S))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_name_and_user_plus_system_seconds() {
        let line = "4242 (post (gres)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 1 0";
        let (comm, seconds) = stat_times(line).unwrap();
        assert_eq!(comm, "post (gres)");
        assert!((seconds - 3.8).abs() < 1e-9, "{seconds}");
        assert!(stat_times("4242 (x) S 1").is_err());
    }

    #[test]
    fn this_machine_s_proc_reads() {
        process_seconds(std::process::id()).unwrap();
        // A thread's own time: a spin of this one shows in it, not a sleep.
        let before = thread_seconds().unwrap();
        let spun = std::time::Instant::now();
        while spun.elapsed() < std::time::Duration::from_millis(50) {}
        assert!(thread_seconds().unwrap() > before);
        postgres_seconds().unwrap();
        assert!(process_seconds(u32::MAX).is_err());
    }
}
