//! The demo's story on stdout: scans, sales, an app QR token (and its replay
//! refused), HQ cut off, offline selling within the caps, HQ back, the backlog
//! draining, and `verify`. Everything lives in a temp dir that is removed at the end.

use crate::hq::Hq;
use crate::scanner::VirtualScanner;
use crate::till::{Till, line};
use agent::daemon;
use anyhow::{Context, bail};
use config::AgentConfig;
use config::agent::{OfflineRedemption, OfflineSection, ScannerSection, SyncSection, Terminator};
use protocol::{CardId, Points};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const CARD: &str = "4006381333931";

const RULES: &str = r#"# The demo program.
version = 0
point_value_minor = 100          # 1 point pays 1.00
accrual_bp = 500                 # 5 % back
max_redeem_share_bp = 5000       # points pay at most half a receipt
excluded_categories = ["tobacco"]
welcome_bonus_points = 50
pending_days = 0
expiry_days = 365

[[promotion]]
name = "double points on dairy"
multiplier_percent = 200
categories = ["dairy"]
starts = "2000-01-01"
ends = "2999-12-31"
"#;

/// Runs the demo on its own runtime.
pub fn run_blocking() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

fn say(text: &str) {
    println!("{text}");
}

fn step(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("pos-demo-").tempdir()?;
    say(&format!(
        "pos-agent demo: a till, its scanner and HQ, end to end, in {} (removed at the end)",
        dir.path().display()
    ));
    let mut hq = Hq::open(dir.path()).await?;
    hq.start().await?;
    say(&format!("[HQ]   sync-server on SQLite at {}", hq.url()));
    let token = hq.enroll("store-demo", "till-1").await?;
    std::fs::write(dir.path().join("terminal.token"), &token)?;
    say(
        "[HQ]   terminal store-demo/till-1 enrolled; its token went to the till's token file (HQ keeps a hash)",
    );
    std::fs::write(dir.path().join("rules.toml"), RULES)?;
    let version = hq.set_rules(&dir.path().join("rules.toml")).await?;
    say(&format!(
        "[HQ]   program rules v{version}: 5 % back, double points on dairy, tobacco excluded, points pay at most half a receipt, welcome bonus 50"
    ));
    hq.rotate_keys().await?;
    say("[HQ]   Ed25519 key for app QR tokens created");

    let mut scanner = VirtualScanner::open()?;
    let cancel = CancellationToken::new();
    let ready = dir.path().join("ready");
    let cfg = agent_config(dir.path(), &hq.url(), &scanner.path);
    let agent_task = tokio::spawn(daemon::run(cfg, Some(ready.clone()), cancel.clone()));
    let base = wait_ready(&ready).await?;
    let till = Till::new(base.clone())?;
    say(&format!(
        "[till] pos-agent on {base}, virtual scanner \"front\" on {} (AIM prefixes, CR)",
        scanner.path
    ));
    wait_until("the scanner to connect", || async {
        let h = till.get("/v1/health").await.ok()?;
        (h["scanners"][0]["state"] == "connected" && h["rules_version"] == json!(version))
            .then_some(())
    })
    .await?;

    let result = story(&till, &mut hq, &mut scanner).await;
    cancel.cancel();
    let stopped = agent_task.await;
    hq.stop().await;
    result?;
    stopped
        .context("the agent's task failed")?
        .context("the agent failed")?;
    say(&format!(
        "\nDone in {:.1} s. Removing {}.",
        started.elapsed().as_secs_f64(),
        dir.path().display()
    ));
    Ok(())
}

async fn story(till: &Till, hq: &mut Hq, scanner: &mut VirtualScanner) -> anyhow::Result<()> {
    let card = CardId::parse(CARD)?;

    step(
        1,
        "The customer's loyalty card is scanned (EAN-13 over the serial line)",
    );
    scanner.scan("]E0", CARD)?;
    let scan = wait_scan(till, "ean13", None).await?;
    say(&format!(
        "   scanner sent \"]E0{}\\r\"; the till's /v1/scans stream got {}",
        card.masked(),
        masked_scan(&scan)
    ));
    let view = till.card(CARD).await?;
    say(&format!(
        "   new card: balance {} points (asked HQ live)",
        view["balance"]
    ));

    step(
        2,
        "A sale with the card: accrual on what is paid, dairy doubled, tobacco excluded",
    );
    let (_, commit) = till
        .sell(
            "R-1001",
            Some(CARD),
            json!([
                line("milk-1l", "dairy", 5_000, 2),
                line("coffee-500g", "grocery", 12_000, 1),
                line("cigarettes", "tobacco", 9_000, 1)
            ]),
            0,
        )
        .await?;
    say(&format!(
        "   R-1001: milk 50.00 (dairy x2), coffee 120.00, cigarettes 90.00 -> {} points accrued",
        commit["accrued_points"]
    ));
    wait_synced(till).await?;
    let view = wait_card(till, "the welcome bonus to arrive", |v| {
        v["balance"].as_i64() >= Some(60)
    })
    .await?;
    say(&format!(
        "   synced to HQ, which added the welcome bonus: balance {} points",
        view["balance"]
    ));

    step(
        3,
        "The app's QR code instead of the card (a token signed by HQ)",
    );
    let token = hq.app_token(&card, 300).await?;
    // Another visit: reads of the same card within the scanner's debounce window
    // would count as the same scan.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let last_at = till.get("/v1/scans/last").await?["at"].clone();
    scanner.scan("]Q1", &token)?;
    let scan = wait_scan(till, "qr", Some(&last_at)).await?;
    say(&format!(
        "   phone shows {}... ({} chars); scan event {}",
        token.get(..12).unwrap_or(&token),
        token.len(),
        masked_scan(&scan)
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let invalid_before = invalid_scans(till).await?;
    scanner.scan("]Q1", &token)?;
    wait_until("the replay to be refused", || async {
        (invalid_scans(till).await.ok()? > invalid_before).then_some(())
    })
    .await?;
    say(
        "   the same QR again (a screenshot) is refused as a replay, counted in /metrics, never sent to the till",
    );

    step(
        4,
        "Paying with points, online: the agent checks the live balance at HQ",
    );
    let (_, commit) = till
        .sell(
            "R-1002",
            Some(CARD),
            json!([line("cheese", "dairy", 8_000, 1)]),
            30,
        )
        .await?;
    say(&format!(
        "   R-1002: cheese 80.00, 30 points pay 30.00, {} points accrued on the 50.00 paid; balance {}",
        commit["accrued_points"], commit["card"]["balance"]
    ));

    step(5, "HQ is cut off (WAN down); the store keeps selling");
    hq.stop().await;
    let mut offline_sales = 0;
    for i in 0..40 {
        till.sell(
            &format!("O-{i:03}"),
            Some(CARD),
            json!([line("groceries", "grocery", 6_000, 1)]),
            0,
        )
        .await?;
        offline_sales += 1;
    }
    let health = till.get("/v1/health").await?;
    say(&format!(
        "   {offline_sales} sales of 60.00 journaled locally (+3 points each); online = {}, sync queue = {} entries, balance {}",
        health["online"],
        health["queue_depth"],
        till.card(CARD).await?["balance"]
    ));
    let (status, commit) = till
        .sell(
            "O-R1",
            Some(CARD),
            json!([line("wine", "drinks", 20_000, 1)]),
            40,
        )
        .await?;
    say(&format!(
        "   offline redemption of 40 points: {} (offline caps: 40 per receipt, 60 per card per day)",
        if status == 200 {
            format!("accepted, balance {}", commit["card"]["balance"])
        } else {
            format!("refused {commit}")
        }
    ));
    let (status, refused) = till
        .sell(
            "O-R2",
            Some(CARD),
            json!([line("wine", "drinks", 20_000, 1)]),
            30,
        )
        .await?;
    if status == 200 {
        bail!("the offline card cap did not apply");
    }
    say(&format!(
        "   another 30 points: refused {} \"{}\"",
        refused["error"]["code"],
        refused["error"]["message"].as_str().unwrap_or("")
    ));

    step(6, "HQ is back: the backlog drains, exactly once");
    hq.start().await?;
    let last_shown = std::cell::Cell::new(-1);
    wait_until("the backlog to drain", || async {
        let h = till.get("/v1/health").await.ok()?;
        let depth = h["queue_depth"].as_i64()?;
        if depth != last_shown.replace(depth) {
            print!("\r   sync queue: {depth:>3} entries left   ");
            let _ = std::io::stdout().flush();
        }
        (depth == 0 && h["online"] == true).then_some(())
    })
    .await?;
    println!();
    let till_view = till.card(CARD).await?;
    say(&format!(
        "   till balance (live from HQ): {} points",
        till_view["balance"]
    ));

    step(7, "HQ checks its books");
    let (ok, summary) = hq.verify().await?;
    say(&format!("   sync-server verify: {summary}"));
    if !ok {
        bail!("verify found differences");
    }
    if till_view["offline"] != false {
        bail!("the till did not reach HQ again");
    }
    Ok(())
}

fn masked_scan(scan: &Value) -> String {
    let card = scan["card"]
        .as_str()
        .map(protocol::ids::masked)
        .unwrap_or_default();
    format!("{{symbology: {}, card: {card}}}", scan["symbology"])
}

async fn invalid_scans(till: &Till) -> anyhow::Result<u64> {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{}/metrics", till_base(till)))
        .send()
        .await?
        .text()
        .await?;
    Ok(resp
        .lines()
        .filter(|l| l.starts_with("pos_agent_scans_total") && l.contains("result=\"invalid\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

fn till_base(till: &Till) -> String {
    till.base().to_owned()
}

async fn wait_scan(till: &Till, symbology: &str, after: Option<&Value>) -> anyhow::Result<Value> {
    wait_until("the scan to reach the till", || async {
        let last = till.get("/v1/scans/last").await.ok()?;
        (last["symbology"] == symbology && after.is_none_or(|a| last["at"] != *a)).then_some(last)
    })
    .await
}

async fn wait_synced(till: &Till) -> anyhow::Result<()> {
    wait_until("the till to sync", || async {
        let h = till.get("/v1/health").await.ok()?;
        (h["queue_depth"] == 0 && h["online"] == true).then_some(())
    })
    .await
}

async fn wait_card(
    till: &Till,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    wait_until(what, || async {
        let v = till.card(CARD).await.ok()?;
        check(&v).then_some(v)
    })
    .await
}

async fn wait_until<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_ready(ready: &Path) -> anyhow::Result<String> {
    let addr = wait_until("the agent to start", || async {
        std::fs::read_to_string(ready)
            .ok()
            .filter(|s| !s.is_empty())
    })
    .await
    .context("starting the agent")?;
    Ok(format!("http://{addr}"))
}

fn agent_config(dir: &Path, hq_url: &str, scanner_path: &str) -> AgentConfig {
    let mut cfg = AgentConfig::default();
    cfg.store.store_id = "store-demo".parse().unwrap_or(cfg.store.store_id);
    cfg.till_api.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.journal.path = Some(dir.join("journal.db"));
    cfg.sync = Some(SyncSection {
        url: hq_url.to_owned(),
        token_file: dir.join("terminal.token"),
        ca_file: None,
        interval_secs: 1,
        batch_size: 10,
        max_backoff_secs: 1,
        live_balance_timeout_ms: 300,
        request_timeout_secs: 5,
    });
    // The story shows the caps mode (escrow needs leases granted in advance).
    cfg.offline = OfflineSection {
        redemption: OfflineRedemption::Caps,
        max_redeem_per_card_per_day: Points(60),
        max_redeem_per_terminal_per_day: Points(1_000),
        max_redeem_per_receipt: Points(40),
        max_consecutive_per_card: 3,
        max_offline_hours: 24,
        ..OfflineSection::default()
    };
    cfg.scanners = vec![ScannerSection {
        name: "front".into(),
        port: scanner_path.into(),
        baud: 9600,
        data_bits: 8,
        parity: config::agent::Parity::None,
        stop_bits: 1,
        flow_control: config::agent::FlowControl::None,
        terminator: Terminator::Cr,
        aim_prefix: true,
        debounce_ms: 300,
        max_frame_len: 512,
    }];
    cfg.log.level = "error".into();
    cfg
}
