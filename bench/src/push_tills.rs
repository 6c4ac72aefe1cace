//! The simulated tills of the push loads, all on one event loop: each till is a task
//! of a current-thread tokio runtime on one OS thread of its own, with one HTTP/1
//! keep-alive connection (hyper). The generator shares the machine's cores with the
//! servers it measures; 500 OS threads with blocking clients cost it 97–157 µs of CPU
//! per push, taken from HQ (docs/performance.md, *An event-driven load generator*).
//!
//! Each push's due time, when it was sent and when its answer was read are kept
//! ([`Sent`]): a push's latency counts from when it was due, and the timeline says
//! whether a slow push waited for the server or for the till.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::sync::mpsc;
use std::time::Duration;
use tokio::time::Instant;

/// One simulated till.
pub struct Till {
    /// `http://HOST:PORT` of its server.
    pub base: String,
    /// Its bearer token.
    pub token: String,
    /// Its pushes' bodies, built before the load (JSON is not the load's cost).
    pub bodies: Vec<Bytes>,
    /// Per push, when it is due from the start (`None`: as soon as the previous one
    /// is answered); as long as `bodies`.
    pub schedule: Vec<Option<Duration>>,
}

/// One push's times from the start of the load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    /// The till (its index in the tills given).
    pub till: usize,
    /// When it was due: its scheduled time, or back to back when the previous answer
    /// was read.
    pub due: Duration,
    /// When the request was handed to the connection.
    pub sent: Duration,
    /// When the answer was read to its end.
    pub answered: Duration,
}

impl Sent {
    /// The push's latency: from when it was due (no coordinated omission: a till
    /// still waiting for its previous answer sends late, and that wait is part of what
    /// its next push costs).
    pub fn latency(&self) -> Duration {
        self.answered.saturating_sub(self.due)
    }
}

/// What the tills did.
pub struct Generated {
    /// Every push, in the order they were answered.
    pub pushes: Vec<Sent>,
    /// CPU seconds of the generator's thread from the start of the load to its end.
    pub cpu_s: f64,
    /// The wall-clock time of the start, to line the pushes up with a server's log.
    pub started_at: std::time::SystemTime,
}

/// The tills, connected and waiting for the start.
pub struct Connected {
    ready: mpsc::Receiver<anyhow::Result<()>>,
    go: mpsc::Sender<()>,
    done: std::thread::JoinHandle<anyhow::Result<Generated>>,
}

impl Connected {
    /// Starts the generator's thread; returns once every till's connection is open
    /// (a fleet's tills, each pushing every few seconds, hold theirs: else a short
    /// run's first pushes, 29 % of a `--quick` run's at 50 %, pay the connection, all
    /// 500 in its first second; docs/performance.md, *The 50 % tail*).
    pub fn open(tills: Vec<Till>) -> anyhow::Result<Self> {
        let (ready_tx, ready) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        let done = std::thread::Builder::new()
            .name("push-tills".into())
            .spawn(move || run(tills, &ready_tx, &go_rx))?;
        let connected = Self { ready, go, done };
        match connected.ready.recv() {
            Ok(Ok(())) => Ok(connected),
            Ok(Err(e)) => Err(e),
            // The thread ended without a word: its own error says why.
            Err(_) => Err(connected
                .join()
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the push generator ended before connecting"))),
        }
    }

    /// Starts the load; [`Running::join`] waits for its end.
    pub fn start(self) -> Running {
        // A thread that ended early reports why at the join.
        let _ = self.go.send(());
        Running { done: self.done }
    }

    fn join(self) -> anyhow::Result<Generated> {
        drop(self.go);
        join(self.done)
    }
}

/// The tills pushing.
pub struct Running {
    done: std::thread::JoinHandle<anyhow::Result<Generated>>,
}

impl Running {
    /// Waits until every till has made its pushes.
    pub fn join(self) -> anyhow::Result<Generated> {
        join(self.done)
    }
}

fn join(done: std::thread::JoinHandle<anyhow::Result<Generated>>) -> anyhow::Result<Generated> {
    done.join()
        .map_err(|_| anyhow::anyhow!("the push generator panicked"))?
}

/// The generator's thread: connects, says so, waits for the start, runs the load.
fn run(
    tills: Vec<Till>,
    ready: &mpsc::Sender<anyhow::Result<()>>,
    go: &mpsc::Receiver<()>,
) -> anyhow::Result<Generated> {
    raise_priority();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let connecting = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, till) in tills.into_iter().enumerate() {
            set.spawn(async move { Ok::<_, anyhow::Error>((i, connect(till).await?)) });
        }
        let mut connected = Vec::new();
        while let Some(joined) = set.join_next().await {
            connected.push(joined??);
        }
        Ok::<_, anyhow::Error>(connected)
    });
    let connected = match connecting {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            anyhow::bail!("the push generator could not connect");
        }
    };
    let _ = ready.send(Ok(()));
    // Outside the runtime: the idle connections need no polling meanwhile.
    go.recv().context("the push load was never started")?;
    let cpu_before = crate::cpu::thread_seconds()?;
    let started_at = std::time::SystemTime::now();
    let pushes = rt.block_on(async {
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for (i, till) in connected {
            set.spawn(till.push(i, start));
        }
        let mut pushes = Vec::new();
        while let Some(joined) = set.join_next().await {
            pushes.extend(joined??);
        }
        Ok::<_, anyhow::Error>(pushes)
    })?;
    let cpu_s = crate::cpu::thread_seconds()? - cpu_before;
    Ok(Generated {
        pushes,
        cpu_s,
        started_at,
    })
}

/// The generator thread's nice value: ahead of every thread of the servers it
/// measures, the SQLite writer's -10 included.
const GENERATOR_NICE: i32 = -15;

/// Puts the generator's thread ahead of the servers' for a core.
///
/// Why: the tills stand for independent machines, whose pushes fall due whatever HQ
/// is doing; here they are one thread beside HQ's on the same cores. At nice 0 it
/// waited for a core behind the SQLite writer (nice -10) and HQ's other threads:
/// in a 50 % run on a loaded machine, 285 of 2,141 pushes were sent more than 5 ms
/// after they fell due while their till was idle, up to 100 ms, and each such wait
/// counts in the push's latency (docs/performance.md, *The event-loop
/// generator rebuilt, and the 50 % tail with it*). 500 threads got a core sooner: the scheduler shares by
/// thread. The thread uses a few % of a core, so its priority takes little from HQ.
/// Without `root` or `CAP_SYS_NICE` it keeps the process's priority, said on stderr.
fn raise_priority() {
    #[cfg(target_os = "linux")]
    {
        let me = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(me), GENERATOR_NICE) {
            eprintln!(
                "the push generator keeps the process's priority ({e}): pushes may be sent late on a busy machine"
            );
        }
    }
}

/// A till with its open connection.
struct Open {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    path: hyper::Uri,
    authorization: HeaderValue,
    bodies: Vec<Bytes>,
    schedule: Vec<Option<Duration>>,
}

/// Opens the till's connection and makes one request on it (`GET /v1/health`), so
/// that the load's first push finds it established.
async fn connect(till: Till) -> anyhow::Result<Open> {
    let authority = till
        .base
        .strip_prefix("http://")
        .with_context(|| format!("not a plain HTTP base: {}", till.base))?
        .trim_end_matches('/')
        .to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    // The connection's I/O runs as its own task beside the till's.
    tokio::spawn(connection);
    let host = HeaderValue::from_str(&authority)?;
    let health = Request::builder()
        .method(Method::GET)
        .uri("/v1/health")
        .header(HOST, host.clone())
        .body(Full::new(Bytes::new()))?;
    answer(&mut sender, health).await?;
    Ok(Open {
        sender,
        host,
        path: hyper::Uri::from_static("/v1/sync/push"),
        authorization: HeaderValue::from_str(&format!("Bearer {}", till.token))?,
        bodies: till.bodies,
        schedule: till.schedule,
    })
}

impl Open {
    /// Makes the till's pushes, each when due; their times from `start`.
    async fn push(mut self, till: usize, start: Instant) -> anyhow::Result<Vec<Sent>> {
        let mut sent = Vec::with_capacity(self.bodies.len());
        // Back to back, a push is due when the previous answer was read.
        let mut answered = start;
        for (due, body) in self.schedule.iter().zip(std::mem::take(&mut self.bodies)) {
            let due = match due {
                Some(due) => {
                    let due = start + *due;
                    tokio::time::sleep_until(due).await;
                    due
                }
                None => answered,
            };
            let request = Request::builder()
                .method(Method::POST)
                .uri(self.path.clone())
                .header(HOST, self.host.clone())
                .header(AUTHORIZATION, self.authorization.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(body))?;
            let sent_at = Instant::now();
            answer(&mut self.sender, request).await?;
            answered = Instant::now();
            sent.push(Sent {
                till,
                due: due - start,
                sent: sent_at - start,
                answered: answered - start,
            });
        }
        Ok(sent)
    }
}

/// Sends `request` and reads its answer to the end (the connection is then free for
/// the next); an answer other than 2xx is an error, as the till's client takes it.
async fn answer(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<()> {
    sender.ready().await?;
    let what = format!("{} {}", request.method(), request.uri());
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        anyhow::bail!(
            "{what}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// One request as the server read it: method, path, authorization, body.
    type Seen = (String, String, String, String);

    /// A plain HTTP/1.1 server on a free port holding each POST `hold` before its
    /// answer (`status`); returns its base and, per connection, the requests it read.
    fn server(hold: Duration, status: u16) -> (String, Arc<Mutex<Vec<Vec<Seen>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let all = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let stream = stream.unwrap();
                let all = all.clone();
                std::thread::spawn(move || {
                    let conn = {
                        let mut all = all.lock().unwrap();
                        all.push(Vec::new());
                        all.len() - 1
                    };
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split(' ');
                        let method = parts.next().unwrap().to_owned();
                        let path = parts.next().unwrap().to_owned();
                        let (mut length, mut authorization) = (0, String::new());
                        loop {
                            let mut header = String::new();
                            reader.read_line(&mut header).unwrap();
                            let header = header.trim_end();
                            if header.is_empty() {
                                break;
                            }
                            let (name, value) = header.split_once(": ").unwrap();
                            match name.to_ascii_lowercase().as_str() {
                                "content-length" => length = value.parse().unwrap(),
                                "authorization" => authorization = value.to_owned(),
                                _ => {}
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let (code, hold) = match method.as_str() {
                            "POST" => (status, hold),
                            _ => (200, Duration::ZERO),
                        };
                        std::thread::sleep(hold);
                        all.lock().unwrap()[conn].push((
                            method,
                            path,
                            authorization,
                            String::from_utf8(body).unwrap(),
                        ));
                        write!(writer, "HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\n{{}}")
                            .unwrap();
                    }
                });
            }
        });
        (base, seen)
    }

    fn till(base: &str, name: &str, schedule: Vec<Option<Duration>>) -> Till {
        Till {
            base: base.to_owned(),
            token: format!("token-{name}"),
            bodies: (0..schedule.len())
                .map(|k| Bytes::from(format!("{name}{k}")))
                .collect(),
            schedule,
        }
    }

    #[test]
    fn each_till_sends_its_scheduled_pushes_and_latency_counts_from_when_due() {
        let hold = Duration::from_millis(40);
        let (base, seen) = server(hold, 200);
        let ms = Duration::from_millis;
        let paced = vec![Some(ms(0)), Some(ms(1)), Some(ms(2))];
        let tills = vec![
            till(&base, "a", paced.clone()),
            till(&base, "b", paced.clone()),
            till(&base, "c", vec![None; 3]),
        ];
        let generated = Connected::open(tills).unwrap().start().join().unwrap();
        // Per connection (one per till): the health check, then its pushes in order,
        // each once.
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_by_key(|conn| conn.last().map(|s| s.3.clone()));
        assert_eq!(seen.len(), 3);
        for (conn, name) in seen.iter().zip(["a", "b", "c"]) {
            let expected: Vec<Seen> = std::iter::once(("GET", "/v1/health", "", ""))
                .map(|(m, p, a, b)| (m.into(), p.into(), a.into(), b.into()))
                .chain((0..3).map(|k| {
                    (
                        "POST".into(),
                        "/v1/sync/push".into(),
                        format!("Bearer token-{name}"),
                        format!("{name}{k}"),
                    )
                }))
                .collect();
            assert_eq!(conn, &expected);
        }
        assert_eq!(generated.pushes.len(), 9);
        for till in 0..3 {
            let mut pushes: Vec<Sent> = generated
                .pushes
                .iter()
                .filter(|p| p.till == till)
                .copied()
                .collect();
            pushes.sort_by_key(|p| p.due);
            assert_eq!(pushes.len(), 3);
            for (k, p) in pushes.iter().enumerate() {
                assert!(p.due <= p.sent && p.sent < p.answered, "{p:?}");
                // Each push waits for the ones before it on the till's connection.
                assert!(p.answered >= hold * (k as u32 + 1), "{p:?}");
                if till < 2 {
                    // Due when scheduled, however late it could be sent: push 3's
                    // latency holds the two answers before it.
                    assert_eq!(p.due, ms(k as u64));
                    assert!(p.latency() >= hold * (k as u32 + 1) - ms(k as u64), "{p:?}");
                } else if k > 0 {
                    // Back to back: due when the previous answer was read.
                    assert_eq!(p.due, pushes[k - 1].answered);
                }
            }
        }
    }

    #[test]
    fn an_answer_other_than_success_fails_the_load() {
        let (base, _) = server(Duration::ZERO, 503);
        let tills = vec![till(&base, "a", vec![None])];
        let err = Connected::open(tills)
            .unwrap()
            .start()
            .join()
            .err()
            .unwrap();
        assert!(err.to_string().contains("503"), "{err}");
    }
}
