//! `fulfil-order`: tasks that share a file-backed warehouse registered as task state, on a
//! runner, under many runs at once, and through the command line (`Registry::state`).

use minder::prelude::*;
use minder::RunError;
use minder_examples::warehouse::{
    fulfil_order, Fulfilment, Line, Movement, Order, Warehouse, LEDGER, WAREHOUSE_ENV,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Ledger lines written here, independently of the warehouse's own code.
fn stock_up(dir: &Path, items: &[(&str, i64)]) {
    std::fs::create_dir_all(dir).unwrap();
    let lines: String = items
        .iter()
        .map(|(sku, n)| {
            serde_json::json!({ "key": format!("restock/{sku}"), "sku": sku, "delta": n })
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(dir.join(LEDGER), lines).unwrap();
}

/// The ledger read back here: every movement, and the stock of each item.
fn ledger(dir: &Path) -> (Vec<Movement>, BTreeMap<String, i64>) {
    let text = std::fs::read_to_string(dir.join(LEDGER)).unwrap();
    // A last line without its newline is a write a SIGKILL cut short (the warehouse ignores
    // it and cuts it off before its next change).
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let movements: Vec<Movement> = complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut stock = BTreeMap::new();
    for m in &movements {
        *stock.entry(m.sku.clone()).or_insert(0) += m.delta;
    }
    (movements, stock)
}

fn order(id: &str, lines: &[(&str, u64)]) -> Order {
    Order {
        id: id.into(),
        lines: lines
            .iter()
            .map(|(sku, qty)| Line {
                sku: sku.to_string(),
                qty: *qty,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_shipped_from_the_runner_s_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    stock_up(dir.path(), &[("apple", 10), ("pear", 3)]);
    let runner = Runner::in_memory().state(Warehouse::new(dir.path()));
    let done = runner
        .run::<fulfil_order>(order("o-1", &[("apple", 4), ("pear", 3), ("apple", 1)]))
        .await
        .unwrap();
    let shipment = dir.path().join("shipments").join("o-1.json");
    assert_eq!(
        done.output,
        Fulfilment::Shipped {
            shipment: shipment.to_string_lossy().into_owned(),
            left: BTreeMap::from([("apple".into(), 5), ("pear".into(), 0)]),
        }
    );
    let (movements, stock) = ledger(dir.path());
    assert_eq!(
        stock,
        BTreeMap::from([("apple".into(), 5), ("pear".into(), 0)])
    );
    // Each reservation is recorded under its step's idempotency key: this run's.
    let taken: Vec<&Movement> = movements.iter().filter(|m| m.delta < 0).collect();
    assert_eq!(taken.len(), 3);
    for m in &taken {
        assert!(m.key.starts_with(&format!("{}/", done.run_id)), "{m:?}");
    }
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&shipment).unwrap()).unwrap();
    assert_eq!(written["order"], "o-1");
    assert_eq!(written["items"].as_array().unwrap().len(), 3);
    // The same movement applied again (an attempt run again after a crash) changes nothing.
    let warehouse = Warehouse::new(dir.path());
    let again = warehouse
        .apply(&taken[0].key, &taken[0].sku, taken[0].delta)
        .await;
    assert!(again.is_ok());
    assert_eq!(ledger(dir.path()).1, stock);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_out_of_stock_gives_back_what_it_reserved() {
    let dir = tempfile::tempdir().unwrap();
    stock_up(dir.path(), &[("apple", 10), ("pear", 1)]);
    let runner = Runner::in_memory().state(Warehouse::new(dir.path()));
    let done = runner
        .run::<fulfil_order>(order("o-2", &[("apple", 4), ("pear", 2)]))
        .await
        .unwrap();
    assert_eq!(
        done.output,
        Fulfilment::Rejected {
            reason: "pear: 2 wanted, 1 in stock".into()
        }
    );
    let (movements, stock) = ledger(dir.path());
    assert_eq!(
        stock,
        BTreeMap::from([("apple".into(), 10), ("pear".into(), 1)])
    );
    // Reserved, then released under a key of its own.
    let apple: Vec<i64> = movements
        .iter()
        .filter(|m| m.sku == "apple")
        .map(|m| m.delta)
        .collect();
    assert_eq!(apple, [10, -4, 4]);
    assert!(!dir.path().join("shipments").join("o-2.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_at_once_share_one_warehouse_and_never_oversell() {
    let dir = tempfile::tempdir().unwrap();
    stock_up(dir.path(), &[("plum", 5)]);
    let runner = Arc::new(Runner::in_memory().state(Warehouse::new(dir.path())));
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..8 {
        let runner = runner.clone();
        runs.spawn(async move {
            runner
                .run::<fulfil_order>(order(&format!("o-{i}"), &[("plum", 1)]))
                .await
                .unwrap()
                .output
        });
    }
    let mut shipped = 0;
    let mut rejected = 0;
    while let Some(output) = runs.join_next().await {
        match output.unwrap() {
            Fulfilment::Shipped { .. } => shipped += 1,
            Fulfilment::Rejected { reason } => {
                assert_eq!(reason, "plum: 1 wanted, 0 in stock");
                rejected += 1;
            }
        }
    }
    assert_eq!((shipped, rejected), (5, 3));
    assert_eq!(ledger(dir.path()).1["plum"], 0);
    let shipments = std::fs::read_dir(dir.path().join("shipments"))
        .unwrap()
        .count();
    assert_eq!(shipments, 5);
}

#[tokio::test]
async fn a_runner_without_the_warehouse_stops_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    stock_up(dir.path(), &[("apple", 1)]);
    let store = minder::MemoryStore::new();
    let id = Runner::new(store.clone())
        .create::<fulfil_order>(&order("o-3", &[("apple", 1)]))
        .await
        .unwrap();
    let err = Runner::new(store.clone())
        .resume::<fulfil_order>(&id)
        .await
        .unwrap_err();
    match &err {
        RunError::MissingState { type_name, .. } => {
            assert_eq!(type_name, "minder_examples::warehouse::Warehouse")
        }
        other => panic!("expected MissingState, got {other:?}"),
    }
    // Nothing was taken; the runner that has the warehouse finishes the run.
    assert_eq!(ledger(dir.path()).1["apple"], 1);
    let done = Runner::new(store)
        .state(Warehouse::new(dir.path()))
        .resume::<fulfil_order>(&id)
        .await
        .unwrap();
    assert!(matches!(done.output, Fulfilment::Shipped { .. }));
    assert_eq!(ledger(dir.path()).1["apple"], 0);
}

#[test]
fn the_command_line_hands_the_registry_s_warehouse_to_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    stock_up(&warehouse, &[("apple", 12), ("pear", 4)]);
    let input = dir.path().join("order.json");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/order-input.json"),
        &input,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minder-examples"))
        .args(["run", "fulfil-order", "--input"])
        .arg(&input)
        .arg("--runs-dir")
        .arg(dir.path().join("runs"))
        .arg("--json")
        .env(WAREHOUSE_ENV, &warehouse)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shipped = &report["output"]["Shipped"];
    assert_eq!(
        shipped["left"],
        serde_json::json!({ "apple": 9, "pear": 3 })
    );
    assert_eq!(
        ledger(&warehouse).1,
        BTreeMap::from([("apple".into(), 9), ("pear".into(), 3)])
    );
    assert!(warehouse.join("shipments").join("order-1.json").exists());
}

/// The run ids in a runs directory.
fn run_ids(runs: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(runs)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn ledger_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join(LEDGER))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// How many reservations of the ledger belong to steps the journal does not have as done.
fn written_not_journaled(runs: &Path, warehouse: &Path) -> usize {
    let Some(id) = run_ids(runs).into_iter().next() else {
        return 0;
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minder-examples"))
        .args(["events", &id, "--json", "--runs-dir"])
        .arg(runs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let done: std::collections::HashSet<String> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "step_completed")
        .map(|e| format!("{id}/{}", e["key"].as_str().unwrap()))
        .collect();
    ledger(warehouse)
        .0
        .iter()
        .filter(|m| m.delta < 0 && !done.contains(&m.key))
        .count()
}

/// A reservation that was written to the warehouse but not yet journaled as done when the
/// runner was SIGKILLed runs again on resume under the same idempotency key: the warehouse
/// takes each line's stock once, whatever the moments of the kills.
#[test]
fn sigkill_during_reservations_then_resume_takes_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    let skus = ["a", "b", "c", "d", "e"];
    stock_up(&warehouse, &skus.map(|s| (s, 1000)));
    let lines = 150usize;
    let order = serde_json::json!({
        "id": "big",
        "lines": (0..lines)
            .map(|i| serde_json::json!({ "sku": skus[i % skus.len()], "qty": 1 + i % 3 }))
            .collect::<Vec<_>>(),
    });
    let input = dir.path().join("order.json");
    std::fs::write(&input, order.to_string()).unwrap();
    let runs = dir.path().join("runs");
    let start = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_minder-examples"))
            .args(args)
            .arg("--runs-dir")
            .arg(&runs)
            .arg("--json")
            .env(WAREHOUSE_ENV, &warehouse)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut kills = 0;
    let mut starts = 0;
    // Reservations in the ledger whose steps the journal did not have as done at a kill.
    let mut in_flight = 0;
    let output = loop {
        starts += 1;
        assert!(starts < 100, "the run never completed");
        let mut child = match run_ids(&runs).first() {
            None => start(&["run", "fulfil-order", "--input", input.to_str().unwrap()]),
            Some(id) => start(&["resume", id]),
        };
        // Killed once a few more reservations reached the ledger (1 to 12, varied), for
        // the first 12 starts; then left to finish.
        let grow = 1 + (starts * 7) % 12;
        let before = ledger_lines(&warehouse);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            assert!(std::time::Instant::now() < deadline, "a start hung");
            if starts <= 12 && ledger_lines(&warehouse) >= before + grow {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        match finished {
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                in_flight += written_not_journaled(&runs, &warehouse);
            }
            Some(status) => {
                let out = child.wait_with_output().unwrap();
                assert!(status.success(), "exit {status}");
                let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                break report["output"].clone();
            }
        }
    };
    assert!(
        kills >= 6,
        "only {kills} kills landed during the reservations"
    );
    // Kills landed between a reservation's write and its step's completion in the journal:
    // those steps ran again on resume, under the same idempotency key.
    assert!(in_flight > 0, "no kill landed inside a reservation step");
    let (movements, stock) = ledger(&warehouse);
    let taken: Vec<&Movement> = movements.iter().filter(|m| m.delta < 0).collect();
    assert_eq!(taken.len(), lines, "one reservation per line, never two");
    let keys: std::collections::HashSet<&str> = taken.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys.len(), lines);
    for (i, sku) in skus.iter().enumerate() {
        let wanted: i64 = (0..lines)
            .filter(|l| l % skus.len() == i)
            .map(|l| 1 + (l % 3) as i64)
            .sum();
        assert_eq!(stock[*sku], 1000 - wanted, "{sku}");
        assert_eq!(output["Shipped"]["left"][*sku], 1000 - wanted, "{sku}");
    }
    println!(
        "{starts} starts, {kills} SIGKILLs during the reservations, {in_flight} reservations \
         written but not journaled as done at a kill"
    );
}

/// A SIGKILL can cut a ledger line short (between the pages of one `write`): the half line is
/// no movement, and the next change cuts it off before it appends.
#[tokio::test]
async fn a_half_written_ledger_line_is_ignored_and_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let restock = serde_json::json!({ "key": "restock/bolt", "sku": "bolt", "delta": 5 });
    let torn = r#"{"key":"run-0/reserve#0","sku":"nu"#;
    std::fs::write(dir.path().join(LEDGER), format!("{restock}\n{torn}")).unwrap();
    let warehouse = Warehouse::new(dir.path());
    assert_eq!(warehouse.movements().await.unwrap().len(), 1);
    assert_eq!(
        warehouse
            .apply("run-1/reserve#0", "bolt", -2)
            .await
            .unwrap(),
        3
    );
    let text = std::fs::read_to_string(dir.path().join(LEDGER)).unwrap();
    assert!(!text.contains(torn), "{text}");
    let (movements, stock) = ledger(dir.path());
    assert_eq!(movements.len(), 2);
    assert_eq!(stock["bolt"], 3);
}
