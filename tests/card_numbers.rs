//! Card numbers typed by hand: the rules HQ distributes say what a card number of the
//! program is, and the till API refuses a typo with 400 `bad_card_number` instead of
//! showing (and then selling on) a new empty card.

#![allow(clippy::unwrap_used)]

use e2e::agent::{Agent, sale_body, sync_config};
use e2e::server::Server;
use e2e::{http, temp_dir, wait_for};
use serde_json::json;
use std::time::Duration;

const CARD: &str = "4006381333931";
/// `CARD` as a JSON number, the way a till with a bug might send it.
const CARD_AS_NUMBER: u64 = 4_006_381_333_931;
/// `CARD` with its last two digits swapped: the EAN-13 check digit catches it.
const TYPO: &str = "4006381333913";
/// A valid EAN-13 outside the program's prefix range.
const FOREIGN: &str = "5901234123457";

#[test]
fn a_mistyped_card_is_refused_at_the_till_with_the_reason_and_nothing_recorded() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("hq"), "");
    server.set_rules("[card_numbers]\ncheck = \"ean13\"\nprefixes = [\"400-409\"]\n");
    let shown = server.admin_ok(&["rules", "show"]);
    assert!(shown.contains("[card_numbers]"), "{shown}");
    let token = server.add_terminal("store-1", "till-1");
    let adir = dir.path().join("agent");
    let agent = Agent::start(
        &adir,
        &sync_config(&adir, "store-1", "till-1", &server.base, &token, ""),
    );
    wait_for(
        Duration::from_secs(30),
        "the rules to reach the till",
        || (agent.health()["rules_version"] == 1).then_some(()),
    );

    let typo = agent.get(&format!("/v1/cards/{TYPO}"));
    assert_eq!(typo.status, 400, "{}", typo.text);
    assert_eq!(typo.code(), "bad_card_number");
    assert!(typo.text.contains("check digit"), "{}", typo.text);
    assert!(!typo.text.contains(TYPO), "{}", typo.text);
    let foreign = agent.get(&format!("/v1/cards/{FOREIGN}"));
    assert_eq!(foreign.status, 400, "{}", foreign.text);
    assert!(foreign.text.contains("400-409"), "{}", foreign.text);

    let quote = agent.post(
        "/v1/quote",
        &json!({"card": TYPO, "lines": [{"sku": "s", "category": "c", "amount_minor": 1000, "qty": 1}]}),
    );
    assert_eq!(quote.code(), "bad_card_number", "{}", quote.text);
    let sale = agent.post("/v1/sales", &sale_body("R-TYPO", Some(TYPO), 20_000, 0));
    assert_eq!(sale.status, 400, "{}", sale.text);
    assert_eq!(sale.code(), "bad_card_number");
    // Nothing was held under the receipt.
    let commit = agent.post("/v1/sales/R-TYPO/commit", &json!({}));
    assert_eq!(commit.code(), "unknown_receipt", "{}", commit.text);

    // The right number sells as before.
    assert_eq!(agent.get(&format!("/v1/cards/{CARD}")).status, 200);
    let (_, committed) = agent.sell("R-1", Some(CARD), 20_000, 0);
    assert_eq!(committed.status, 200, "{}", committed.text);
    // A card number sent where a text belongs: serde's words quote it, masked.
    let mut body = sale_body("R-NUM", Some(CARD), 20_000, 0);
    body["card"] = json!(CARD_AS_NUMBER);
    let wrong_type = agent.post("/v1/sales", &body);
    assert_eq!(wrong_type.code(), "bad_json", "{}", wrong_type.text);
    assert!(
        wrong_type.text.contains("****3931") && !wrong_type.text.contains(CARD),
        "{}",
        wrong_type.text
    );
    agent.wait_synced();
    assert!(!agent.log().contains(TYPO));
    server.assert_verify();
}

/// HQ's answers to malformed requests quote what was wrong (serde's words, a cursor,
/// a protocol version): a card number a terminal sent in the wrong place comes back
/// masked, and stays out of HQ's log, on every endpoint that reads a body or a query.
#[test]
fn hq_answers_a_card_number_in_a_malformed_request_masked_and_never_logs_it() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("hq"), "");
    let token = server.add_terminal("store-1", "till-1");
    let number = json!(CARD_AS_NUMBER);
    let bodies = [
        ("/v1/sync/push", json!({"protocol": 1, "store_id": number})),
        ("/v1/sync/push", json!({"protocol": number})),
        ("/v1/reservations", json!({"protocol": 1, "card": number})),
        ("/v1/sync/leases", json!({"protocol": 1, "want": [number]})),
        ("/v1/tokens/use", json!({"protocol": 1, "token_id": number})),
    ];
    for (path, body) in bodies {
        let answer = http::post_hq(&server.at(path), &token, &body);
        assert_eq!(answer.status, 400, "{path} {body}: {}", answer.text);
        assert!(
            answer.text.contains("****3931") && !answer.text.contains(CARD),
            "{path} {body}: {}",
            answer.text
        );
    }
    let pull = http::get_hq(&server.at(&format!("/v1/sync/pull?cursor=-{CARD}")), &token);
    assert_eq!(pull.code(), "bad_request", "{}", pull.text);
    assert!(
        pull.text.contains("****3931") && !pull.text.contains(CARD),
        "{}",
        pull.text
    );
    let log = server.log();
    assert!(
        log.contains("request refused"),
        "the refusals were logged:\n{log}"
    );
    assert!(!log.contains(CARD), "full card number in HQ's log:\n{log}");
}
