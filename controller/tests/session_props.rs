//! Property tests of the session machine against a simple reference model: random sequences of
//! legs arriving, answering, stalling, recovering, hanging up and time passing, for one device
//! with two paths. The model says only what must be true: a conversation lives while the far
//! party lives and at least one client leg lives (or the grace period runs); a device never has
//! two live legs on one path; nothing is assigned to an ended session; when everything has hung
//! up, nothing is left.

use handoff::session::{Command, Device, Input, LegArrival, Path, Rules, Sessions, State};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Debug)]
enum Step {
    Arrive(Path),
    FarAnswers,
    FarHangsUp,
    FarFails,
    LoseLeg(usize),
    UserHangsUp(usize),
    Stall(usize),
    Recover(usize),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => prop_oneof![Just(Path::Data), Just(Path::Carrier)].prop_map(Step::Arrive),
        2 => Just(Step::FarAnswers),
        1 => Just(Step::FarHangsUp),
        1 => Just(Step::FarFails),
        2 => (0usize..8).prop_map(Step::LoseLeg),
        1 => (0usize..8).prop_map(Step::UserHangsUp),
        2 => (0usize..8).prop_map(Step::Stall),
        1 => (0usize..8).prop_map(Step::Recover),
        3 => (1u64..20_000).prop_map(Step::Wait),
    ]
}

fn device() -> Device {
    Device {
        id: "d".into(),
        user: "u".into(),
        endpoint: Some("app".into()),
        number: Some("+15550001".into()),
        caller_id: None,
    }
}

/// Applies the PBX's side of the commands: every hangup the core asks for happens at once.
fn apply(core: &mut Sessions, cmds: Vec<Command>, now: u64, live: &mut HashSet<String>) {
    let mut queue = cmds;
    while let Some(cmd) = queue.pop() {
        if let Command::Hangup { uniqueid, .. } = cmd {
            if live.remove(&uniqueid) {
                let out = core.handle(Input::Hangup { uniqueid, cause: 16, cause_txt: String::new() }, now);
                queue.extend(out.commands);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn sessions_follow_the_model(steps in proptest::collection::vec(step(), 1..60)) {
        let rules = Rules::default();
        let mut core = Sessions::new(rules.clone(), vec![device()], "p");
        let mut now = 0u64;
        let mut n = 0;
        // Channels alive in the "PBX", client legs by arrival order, and which are assigned.
        let mut live: HashSet<String> = HashSet::new();
        let mut legs: Vec<(String, Path)> = Vec::new();
        let mut far_of: HashMap<String, String> = HashMap::new();
        for s in steps {
            let out = match s {
                Step::Arrive(path) => {
                    n += 1;
                    let uid = format!("c{n}");
                    let out = core.handle(Input::LegArrived(LegArrival {
                        uniqueid: uid.clone(),
                        channel: format!("PJSIP/{uid}"),
                        caller: "+15550001".into(),
                        endpoint: "app".into(),
                        path,
                        far: "2000".into(),
                        token: String::new(),
                    }), now);
                    for c in &out.commands {
                        match c {
                            Command::Assign { uniqueid, session, .. } => {
                                prop_assert!(core.state(session).is_some_and(|st| !matches!(st, State::Ending { .. })), "assigned into an ended session");
                                live.insert(uniqueid.clone());
                                legs.push((uniqueid.clone(), path));
                            }
                            Command::OriginateFar { uniqueid, session, .. } => {
                                live.insert(uniqueid.clone());
                                far_of.insert(session.0.clone(), uniqueid.clone());
                            }
                            _ => {}
                        }
                    }
                    out
                }
                Step::FarAnswers => match far_of.values().find(|f| live.contains(*f)) {
                    Some(f) => core.handle(Input::FarAnswered { uniqueid: f.clone() }, now),
                    None => continue,
                },
                Step::FarHangsUp => match far_of.values().find(|f| live.contains(*f)).cloned() {
                    Some(f) => { live.remove(&f); core.handle(Input::Hangup { uniqueid: f, cause: 16, cause_txt: String::new() }, now) }
                    None => continue,
                },
                Step::FarFails => match far_of.values().find(|f| live.contains(*f)).cloned() {
                    Some(f) => { live.remove(&f); core.handle(Input::FarFailed { uniqueid: f, reason: "busy".into(), no_channel: true }, now) }
                    None => continue,
                },
                Step::LoseLeg(i) | Step::UserHangsUp(i) => {
                    let cause = if matches!(s, Step::UserHangsUp(_)) { 16 } else { 41 };
                    match legs.get(i).map(|l| l.0.clone()).filter(|u| live.contains(u)) {
                        Some(u) => { live.remove(&u); core.handle(Input::Hangup { uniqueid: u, cause, cause_txt: String::new() }, now) }
                        None => continue,
                    }
                }
                Step::Stall(i) => match legs.get(i).filter(|l| live.contains(&l.0)) {
                    Some(l) => core.handle(Input::LegStalled { uniqueid: l.0.clone(), silent_ms: 40 }, now),
                    None => continue,
                },
                Step::Recover(i) => match legs.get(i).filter(|l| live.contains(&l.0)) {
                    Some(l) => core.handle(Input::LegRecovered { uniqueid: l.0.clone() }, now),
                    None => continue,
                },
                Step::Wait(ms) => { now += ms; core.handle(Input::Tick, now) }
            };
            apply(&mut core, out.commands, now, &mut live);

            // Invariants against the model.
            let ids: Vec<_> = core.ids().cloned().collect();
            prop_assert!(ids.len() <= 2, "one device has at most a live and an ending session");
            for id in &ids {
                let st = core.state(id).unwrap().clone();
                let legs_now = core.live_legs(id);
                let per_path = |p: Path| legs_now.iter().filter(|(_, q)| *q == p).count();
                prop_assert!(per_path(Path::Data) <= 1 && per_path(Path::Carrier) <= 1, "two live legs on one path: {legs_now:?}");
                let far_live = far_of.get(&id.0).is_some_and(|f| live.contains(f));
                match st {
                    State::AwaitingFarAnswer | State::Connected => {
                        prop_assert!(far_live, "{st:?} without a far party");
                        prop_assert!(!legs_now.is_empty(), "{st:?} without a client leg");
                    }
                    State::Grace { until } => {
                        prop_assert!(far_live && legs_now.is_empty());
                        prop_assert!(now < until, "grace outlived its period");
                    }
                    State::Ending { .. } => {}
                }
            }
        }
        // Hang up everything that is left: nothing may remain.
        let rest: Vec<String> = live.iter().cloned().collect();
        for u in rest {
            if live.remove(&u) {
                let out = core.handle(Input::Hangup { uniqueid: u, cause: 16, cause_txt: String::new() }, now);
                apply(&mut core, out.commands, now, &mut live);
            }
        }
        now += 60_000;
        core.handle(Input::Tick, now);
        prop_assert!(core.is_empty(), "sessions left: {:?}", core.ids().collect::<Vec<_>>());
    }
}
