//! The store survives `kill -9`: nothing it said was committed is lost, and it always opens again.
//!
//! A writer child process (this same binary, run with `--writer DIR ROUND`) commits records
//! through [`Store`] as fast as it can, the way handoffd does when it authorizes a move: an
//! atomic batch of ticket + bar + audit record ([`Store::apply`]), a spent ticket
//! ([`Store::take_ticket`]), a user ([`Store::add_user`]) and a failure counter
//! ([`Store::record_failure`]). After each call returns, it prints one line naming what was
//! committed. The parent kills it with SIGKILL after a random 20–300 ms (so some kills land
//! while the store is still opening or recovering), reopens the store, and checks that
//!
//! - the store opens (no error, no panic) after every kill;
//! - every record a writer printed is there, with its content;
//! - every batch is all-or-nothing: no ticket without its bar and audit record, and back;
//! - the audit log has no holes (sequence numbers 1..=n).
//!
//! It runs as a plain program (`harness = false`) because it spawns itself; extra arguments that
//! `cargo test` passes (filters, `--test-threads`) are ignored.

// Clock, tokio and sockets are allowed here: a test that drives real processes and sockets (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use handoff::store::{AuditAction, AuditRecord, Bar, Outcome, Store, TicketHash, TicketRecord, UnixMs, Write};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: u32 = 40;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--writer") {
        let dir = &args[i + 1];
        let round: u32 = args[i + 2].parse().expect("round number");
        writer(Path::new(dir), round);
        return;
    }
    if let Err(e) = parent() {
        eprintln!("store_kill9: FAILED: {e}");
        std::process::exit(1);
    }
}

/// The ticket hash of writer `round`, record `i`: distinct per (round, i), and recomputable.
fn hash_of(round: u32, i: u64) -> TicketHash {
    let mut h = [0u8; 32];
    h[..4].copy_from_slice(&round.to_be_bytes());
    h[4..12].copy_from_slice(&i.to_be_bytes());
    h[12..].fill(0xA5);
    TicketHash(h)
}

/// The inverse of [`hash_of`].
fn round_and_index(h: &TicketHash) -> (u32, u64) {
    let [r0, r1, r2, r3, i @ ..] = h.0;
    let mut index = [0u8; 8];
    index.copy_from_slice(&i[..8]);
    (u32::from_be_bytes([r0, r1, r2, r3]), u64::from_be_bytes(index))
}

fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("writer printed {s:?} where a number belongs"))
}

fn ticket(round: u32, i: u64) -> TicketRecord {
    TicketRecord {
        hash: hash_of(round, i),
        user: "alice".into(),
        session: format!("s{round}-{i}"),
        from_device: "phone".into(),
        to_device: "desk".into(),
        issued: UnixMs(u64::from(round) * 1_000_000 + i),
        expires: UnixMs(u64::MAX / 2),
        presented: None,
    }
}

fn bar(round: u32, i: u64) -> Bar {
    Bar { session: format!("s{round}-{i}"), device: "phone".into(), until: UnixMs(u64::from(round) * 1_000_000 + i) }
}

fn audit(round: u32, i: u64) -> AuditRecord {
    AuditRecord {
        at: UnixMs(u64::from(round) * 1_000_000 + i),
        actor: format!("writer:{round}:{i}"),
        action: AuditAction::MoveRequest,
        user: Some("alice".into()),
        device: Some("desk".into()),
        session: Some(format!("s{round}-{i}")),
        ticket: Some(hash_of(round, i).short_id()),
        outcome: Outcome::Granted,
        reason: None,
    }
}

/// The child: commits records until it is killed, printing each one once its call returned.
fn writer(dir: &Path, round: u32) {
    let store = match Store::open(dir) {
        Ok(s) => s,
        Err(e) => {
            println!("OPEN-ERROR {e}");
            std::process::exit(3);
        }
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    let _ = writeln!(out, "OPEN");
    let _ = out.flush();
    for i in 0u64.. {
        store
            .apply(&[Write::PutTicket(ticket(round, i)), Write::PutBar(bar(round, i)), Write::Audit(audit(round, i))])
            .expect("apply");
        let _ = writeln!(out, "BATCH {round} {i}");
        let _ = out.flush();
        if i % 3 == 0 {
            let before = store.take_ticket(&hash_of(round, i), UnixMs(7)).expect("take_ticket");
            assert!(before.is_some_and(|t| t.presented.is_none()), "a fresh ticket was already spent");
            let _ = writeln!(out, "TAKEN {round} {i}");
            let _ = out.flush();
        }
        if i % 5 == 0 {
            let name = format!("u{round}x{i}");
            store.add_user(&name, UnixMs(1)).expect("add_user");
            let _ = writeln!(out, "USER {name}");
            let _ = out.flush();
        }
        if i % 7 == 0 {
            let name = format!("f{round}");
            let n = i;
            store
                .record_failure(&name, move |_| handoff::store::Failures {
                    recent: vec![UnixMs(n)],
                    locked_until: None,
                })
                .expect("record_failure");
            let _ = writeln!(out, "FAIL {name} {i}");
            let _ = out.flush();
        }
    }
}

/// What the writers said they committed.
#[derive(Default)]
struct Committed {
    batches: BTreeSet<(u32, u64)>,
    taken: BTreeSet<(u32, u64)>,
    users: BTreeSet<String>,
    failures: BTreeMap<String, u64>,
}

fn parent() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let path = dir.path().join("store");
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut committed = Committed::default();
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
            | 1;
    let mut killed_before_open = 0;
    let mut reopen_ms_max = 0f64;
    let mut reopen_ms_sum = 0f64;

    for round in 0..ROUNDS {
        // xorshift: a kill delay of 20..=300 ms
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(20 + seed % 281);
        let mut child = Command::new(&exe)
            .arg("--writer")
            .arg(&path)
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn writer: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let reader =
            std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
        std::thread::sleep(delay);
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet (no wait before).
        let rc = unsafe { libc_kill(child.id() as i32, 9) };
        if rc != 0 {
            return Err(format!("round {round}: kill -9 {} failed", child.id()));
        }
        let status = child.wait().map_err(|e| format!("wait: {e}"))?;
        let lines = reader.join().map_err(|_| "reader thread panicked".to_string())?;
        if status.code().is_some() {
            return Err(format!(
                "round {round}: the writer exited on its own ({status}); its last lines: {:?}",
                lines.iter().rev().take(3).collect::<Vec<_>>()
            ));
        }
        if lines.first().map(String::as_str) != Some("OPEN") {
            if let Some(e) = lines.iter().find(|l| l.starts_with("OPEN-ERROR")) {
                return Err(format!("round {round}: the store did not open after a kill -9: {e}"));
            }
            killed_before_open += 1;
        }
        for l in &lines {
            let f: Vec<&str> = l.split(' ').collect();
            match f.as_slice() {
                ["BATCH", r, i] => {
                    committed.batches.insert((num(r)?, num(i)?));
                }
                ["TAKEN", r, i] => {
                    committed.taken.insert((num(r)?, num(i)?));
                }
                ["USER", name] => {
                    committed.users.insert((*name).to_string());
                }
                ["FAIL", name, i] => {
                    committed.failures.insert((*name).to_string(), num(i)?);
                }
                ["OPEN"] => {}
                _ => return Err(format!("round {round}: unexpected writer line {l:?}")),
            }
        }

        let t0 = Instant::now();
        let store = Store::open(&path).map_err(|e| format!("round {round}: reopening after kill -9: {e}"))?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        reopen_ms_max = reopen_ms_max.max(ms);
        reopen_ms_sum += ms;
        verify(&store, &committed)
            .map_err(|e| format!("round {round} (killed after {} ms): {e}", delay.as_millis()))?;
    }

    println!(
        "store_kill9: {ROUNDS} kill -9 rounds ({killed_before_open} before the store had opened): {} batches, {} spent tickets, {} users, {} failure counters committed, all present; batches all-or-nothing; audit log without holes; reopen mean {:.1} ms, max {:.1} ms",
        committed.batches.len(),
        committed.taken.len(),
        committed.users.len(),
        committed.failures.len(),
        reopen_ms_sum / f64::from(ROUNDS),
        reopen_ms_max,
    );
    if committed.batches.len() < ROUNDS as usize {
        return Err(format!(
            "only {} batches committed in {ROUNDS} rounds: the writer barely ran",
            committed.batches.len()
        ));
    }
    Ok(())
}

fn verify(store: &Store, c: &Committed) -> Result<(), String> {
    let e = |e: handoff::store::StoreError| e.to_string();
    let tickets: BTreeMap<TicketHash, TicketRecord> =
        store.list_tickets().map_err(e)?.into_iter().map(|t| (t.hash, t)).collect();
    let bars: BTreeSet<(String, u64)> =
        store.list_bars().map_err(e)?.into_iter().map(|b| (b.session, b.until.0)).collect();
    let audit = store.audit_since(0).map_err(e)?;
    let audit_actors: BTreeSet<String> = audit.iter().map(|(_, r)| r.actor.clone()).collect();

    // Committed records are there, with their content.
    for &(r, i) in &c.batches {
        let t = tickets.get(&hash_of(r, i)).ok_or_else(|| format!("committed ticket of batch {r}/{i} lost"))?;
        let mut want = ticket(r, i);
        want.presented = t.presented;
        if *t != want {
            return Err(format!("ticket of batch {r}/{i} changed: {t:?}"));
        }
        if !bars.contains(&(format!("s{r}-{i}"), bar(r, i).until.0)) {
            return Err(format!("committed bar of batch {r}/{i} lost"));
        }
        if !audit_actors.contains(&format!("writer:{r}:{i}")) {
            return Err(format!("committed audit record of batch {r}/{i} lost"));
        }
    }
    for &(r, i) in &c.taken {
        if tickets[&hash_of(r, i)].presented != Some(UnixMs(7)) {
            return Err(format!("spent ticket {r}/{i} is unspent again: a replay would be accepted"));
        }
    }
    for u in &c.users {
        if store.get_user(u).map_err(e)?.is_none() {
            return Err(format!("committed user {u} lost"));
        }
    }
    for (name, i) in &c.failures {
        let f = store.failures(name).map_err(e)?.ok_or_else(|| format!("failure counter {name} lost"))?;
        let got = f.recent.first().map(|t| t.0).unwrap_or(0);
        if got < *i {
            return Err(format!("failure counter {name} went back from {i} to {got}"));
        }
    }

    // Batches are all-or-nothing, committed or not.
    for t in tickets.values() {
        let (r, i) = round_and_index(&t.hash);
        if !bars.contains(&(format!("s{r}-{i}"), bar(r, i).until.0))
            || !audit_actors.contains(&format!("writer:{r}:{i}"))
        {
            return Err(format!("batch {r}/{i} is half there: ticket without its bar or audit record"));
        }
    }
    if audit.len() != tickets.len() || bars.len() != tickets.len() {
        return Err(format!(
            "{} tickets, {} bars, {} audit records: batches are not all-or-nothing",
            tickets.len(),
            bars.len(),
            audit.len()
        ));
    }

    // The audit log has no holes.
    for (n, (seq, _)) in audit.iter().enumerate() {
        if *seq != n as u64 + 1 {
            return Err(format!("audit log has a hole: record #{} has sequence number {seq}", n + 1));
        }
    }
    Ok(())
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
