//! The soak (`make soak`; not in CI): an hour of faults on 1,000 connections, then the truth.
//!
//! `cargo bench --bench soak -- [--minutes M] [--connections N] [--every SECONDS] [--only F,F]`
//! (defaults 60, 1000, 180, all faults) against the running test environment. `--only` takes
//! the faults' short names: neo4j, postgres, apiserver, replica, rotation, wrong-password,
//! retarget, edit, recreate.
//!
//! Two operator replicas share the connections by shard Leases. The connections log in to
//! Neo4j, to PostgreSQL, and to PostgreSQL through PgBouncer, each through a proxy of the
//! soak's that counts connections (the logins the operator attempted); a few have a wrong
//! password on purpose. Every `--every` seconds one fault, in an order shuffled each round
//! (`faults.rs`): Neo4j killed, PostgreSQL crashed, the apiserver restarted, a replica killed,
//! a password rotated, a Secret given a wrong password, connections pointed at a dead port,
//! edited, deleted and created again. After each the soak waits until status matches the
//! truth, and times it. Meanwhile a watcher records every status change, and at the end each
//! `Ready=True` is judged against what was true when it was written (`truth.rs`).
//!
//! Prints a table like `make report`'s, and exits 1 when a false Ready was seen, a connection
//! stayed Ready through a fault that should have ended it, or status did not settle.

#[path = "../../tests/common/mod.rs"]
mod common;
mod faults;
mod fleet;
mod replicas;
mod truth;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{TestNamespace, client, install_crd, measure::refuse_if_another_operator_reconciles};
use faults::{Fault, Row, Soak};
use fleet::{Fleet, Server};
use replicas::Replicas;
use truth::Record;

struct Plan {
    minutes: u64,
    connections: usize,
    every: Duration,
    faults: Vec<Fault>,
}

impl Plan {
    fn from_args() -> Self {
        let mut plan = Plan {
            minutes: 60,
            connections: 1000,
            every: Duration::from_secs(180),
            faults: Fault::ALL.to_vec(),
        };
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        for pair in args.chunks(2) {
            let value = pair.get(1).map(String::as_str).unwrap_or_default();
            let number = || -> u64 {
                value.parse().unwrap_or_else(|_| {
                    panic!("{} takes a number, not {value:?}", pair[0]);
                })
            };
            match pair[0].as_str() {
                "--minutes" => plan.minutes = number(),
                "--connections" => plan.connections = number() as usize,
                "--every" => plan.every = Duration::from_secs(number()),
                "--only" => {
                    plan.faults = value
                        .split(',')
                        .map(|name| {
                            Fault::ALL
                                .into_iter()
                                .find(|f| f.short() == name)
                                .unwrap_or_else(|| panic!("no fault is called {name:?}"))
                        })
                        .collect()
                }
                other => panic!(
                    "unknown argument {other:?}: [--minutes M] [--connections N] [--every SECONDS] [--only F,F]"
                ),
            }
        }
        plan
    }
}

#[tokio::main]
async fn main() {
    let plan = Plan::from_args();
    let client = client().await;
    client.apiserver_version().await.unwrap_or_else(|e| {
        panic!("the test apiserver does not answer ({e}): start it with `bash tests/testenv/testenv.sh up`")
    });
    install_crd();
    let ns = TestNamespace::create(&client, "soak").await.name;
    refuse_if_another_operator_reconciles(&client, &ns).await;
    let load_at_start = load_average();

    let fleet = Fleet::create(&client, &ns, plan.connections).await;
    let (record, watcher) = Record::watch(fleet.api.clone());
    let started = Instant::now();
    let replicas = Replicas::start(&ns);
    let mut soak = Soak::new(fleet, record, replicas);
    let first = soak.settle().await;
    eprintln!(
        "soak: {} connections in {ns}; replicas started; status matched the truth after {:?} (logs: {})",
        plan.connections,
        first,
        soak.replicas.logs()
    );
    if let Err(unmet) = &first {
        panic!("the connections did not settle after the operator started: {unmet}");
    }
    let cpu_at_start = soak.replicas.cpu_seconds_of_a();

    let mut order = Shuffle::seeded(plan.faults.clone());
    let mut rows: Vec<Row> = Vec::new();
    let mut idle = Idle::default();
    let end = started + Duration::from_secs(plan.minutes * 60);
    while Instant::now() < end {
        let slot = Instant::now();
        let fault = order.next();
        eprintln!(
            "soak: {:>5.0} s {}",
            started.elapsed().as_secs_f64(),
            fault.name()
        );
        let row = soak.run(fault).await;
        eprintln!("soak:         {}", describe(&row));
        rows.push(row);
        let connects = soak.fleet.connects_by_server();
        let quiet = Instant::now();
        tokio::time::sleep_until((slot + plan.every).min(end).into()).await;
        idle.add(quiet.elapsed(), &connects, &soak.fleet.connects_by_server());
    }
    let hour = started.elapsed();
    let cpu_a = soak.replicas.cpu_seconds_of_a() - cpu_at_start;
    watcher.abort();

    let seen = soak.record.all();
    let false_ready = soak.truth.judge(&seen, &soak.fleet);
    print_table(&plan, &ns, &rows);
    println!();
    println!(
        "- ran {:.1} min, {} faults (seed {}), load average {} at start, {} at end",
        hour.as_secs_f64() / 60.0,
        rows.len(),
        order.seed,
        load_at_start,
        load_average()
    );
    println!(
        "- status changes recorded by the watcher: {}; Ready=True among them judged against the truth: {}",
        seen.len(),
        seen.iter().filter(|s| s.is_ready()).count()
    );
    println!("- false Ready observed: {}", false_ready.len());
    for f in false_ready.iter().take(20) {
        let at = k8s_openapi::jiff::Timestamp::try_from(f.seen.at).unwrap_or_default();
        println!(
            "  - {} (uid {}) seen at {at}: {}",
            f.seen.name, f.seen.uid, f.why
        );
    }
    let still_ready: usize = rows.iter().filter_map(|r| r.found.still_ready).sum();
    println!("- still Ready 40 s into a fault that should have ended it: {still_ready}");
    let unsettled = rows.iter().filter(|r| r.found.settled.is_err()).count();
    println!("- faults after which status did not match the truth within 5 min: {unsettled}");
    let (slope, points) = rss_slope(&rows);
    let (late_slope, late_points) = rss_slope(&rows[rows.len() / 2..]);
    println!(
        "- replica a's RSS after each fault settled: {points} points, {:.1} -> {:.1} MiB, slope {slope:+.2} MiB/hour (least squares); over the second half ({late_points} points) {late_slope:+.2} MiB/hour",
        rows.first().map_or(0.0, |r| r.rss_mib.0),
        rows.last().map_or(0.0, |r| r.rss_mib.0),
    );
    println!(
        "- replica a's CPU over the run: {cpu_a:.1} s ({:.1} % of one core)",
        cpu_a / hour.as_secs_f64() * 100.0
    );
    println!(
        "- logins attempted while nothing failed: {} in {:.1} min ({:.1}/min; {}; pools renew each connection every pool.maxLifetime, 30 min)",
        idle.connects.values().sum::<u64>(),
        idle.time.as_secs_f64() / 60.0,
        idle.per_minute(),
        idle.connects
            .iter()
            .map(|(server, n)| format!("{} {n}", server.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let storm = rows.iter().map(|r| r.connects).max().unwrap_or(0);
    println!("- most logins attempted during one fault: {storm}");

    soak.replicas.kill_b();
    drop(soak.replicas);
    soak.fleet.remove().await;
    if !false_ready.is_empty() || still_ready > 0 || unsettled > 0 {
        std::process::exit(1);
    }
}

/// The table's columns after "at" and "fault".
const COLUMNS: [&str; 7] = [
    "detail",
    "affected",
    "not Ready after",
    "still Ready at 40 s",
    "status matched the truth",
    "logins",
    "RSS a / b MiB",
];

fn cells(row: &Row) -> [String; 7] {
    let settled = match &row.found.settled {
        Ok(d) => format!("after {:.1} s", d.as_secs_f64()),
        Err(unmet) => format!("**not in 5 min**: {unmet}"),
    };
    [
        row.found.what.clone(),
        row.found.affected.to_string(),
        row.found.detected.clone().unwrap_or("-".into()),
        row.found.still_ready.map_or("-".into(), |n| n.to_string()),
        settled,
        row.connects.to_string(),
        format!("{:.1} / {:.1}", row.rss_mib.0, row.rss_mib.1),
    ]
}

fn describe(row: &Row) -> String {
    COLUMNS
        .iter()
        .zip(cells(row))
        .map(|(column, cell)| format!("{column}: {cell}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn print_table(plan: &Plan, ns: &str, rows: &[Row]) {
    println!(
        "# Soak: {} connections, 2 replicas, {} min, a fault every {} s (namespace {ns})",
        plan.connections,
        plan.minutes,
        plan.every.as_secs()
    );
    println!();
    println!("| at | fault | {} |", COLUMNS.join(" | "));
    println!("|{}", " --- |".repeat(COLUMNS.len() + 2));
    for row in rows {
        println!(
            "| {} min {:02} s | {} | {} |",
            row.at.as_secs() / 60,
            row.at.as_secs() % 60,
            row.fault.name(),
            cells(row).join(" | ")
        );
    }
}

/// Least-squares slope of replica a's RSS over the faults' end times, in MiB per hour.
fn rss_slope(rows: &[Row]) -> (f64, usize) {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.found.settled.is_ok())
        .map(|r| (r.at.as_secs_f64() / 3600.0, r.rss_mib.0))
        .collect();
    let n = points.len() as f64;
    if points.len() < 2 {
        return (0.0, points.len());
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    (if sxx > 0.0 { sxy / sxx } else { 0.0 }, points.len())
}

/// Time with nothing failing and the logins attempted in it, by server.
#[derive(Default)]
struct Idle {
    time: Duration,
    connects: BTreeMap<Server, u64>,
}

impl Idle {
    fn add(
        &mut self,
        time: Duration,
        before: &BTreeMap<Server, u64>,
        after: &BTreeMap<Server, u64>,
    ) {
        self.time += time;
        for (server, n) in after {
            *self.connects.entry(*server).or_default() += n - before.get(server).unwrap_or(&0);
        }
    }

    fn per_minute(&self) -> f64 {
        let connects: u64 = self.connects.values().sum();
        connects as f64 / (self.time.as_secs_f64() / 60.0).max(f64::EPSILON)
    }
}

/// The faults in an order shuffled anew each round, from a seed printed with the results.
struct Shuffle {
    seed: u64,
    state: u64,
    faults: Vec<Fault>,
    round: Vec<Fault>,
}

impl Shuffle {
    fn seeded(faults: Vec<Fault>) -> Self {
        let seed = rand::random::<u64>() | 1;
        Self {
            seed,
            state: seed,
            faults,
            round: Vec::new(),
        }
    }

    fn next(&mut self) -> Fault {
        if self.round.is_empty() {
            self.round = self.faults.clone();
            for i in (1..self.round.len()).rev() {
                let j = (self.random() % (i as u64 + 1)) as usize;
                self.round.swap(i, j);
            }
        }
        self.round.pop().expect("a round has faults")
    }

    /// xorshift64: enough to shuffle, and reproducible from the seed.
    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
