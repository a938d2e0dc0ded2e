//! The leg switch on FreeSWITCH: one voice per device group. The feeding leg is the one
//! member unmuted in the conference; when it goes, the next leg is unmuted (the gap measured
//! from its silence), and a device's two legs never hear each other.

use super::{DriverEvent, FreeSwitchDriver, MixLeg};
use crate::session::{Input, Millis, Path};
use std::collections::BTreeMap;

impl FreeSwitchDriver {
    /// The two legs of a device must not hear each other (the standby leg would hear the
    /// phone's own voice): `relate <a> <b> nohear` both ways once both are members.
    pub(super) fn relate(&mut self, uuid: &str, now: Millis) {
        let Some(leg) = self.legs.get(uuid).cloned() else { return };
        let Some(m) = leg.member else { return };
        let mates: Vec<u64> = self
            .legs
            .iter()
            .filter(|(u, l)| u.as_str() != uuid && l.group == leg.group && !self.going.contains(*u))
            .filter_map(|(_, l)| l.member)
            .collect();
        for other in mates {
            for (a, b) in [(m, other), (other, m)] {
                if self.related.insert((leg.bridge.clone(), a, b)) {
                    self.api(format!("conference {} relate {a} {b} nohear", leg.bridge), now);
                }
            }
        }
    }

    /// A client leg hung up: if it fed its group and was lost (`switch`), the next leg takes
    /// over; `silence`: when its silence began (a media timeout), to measure the gap.
    pub(super) fn leg_gone(&mut self, uuid: &str, cause: &str, switch: bool, silence: Option<(u64, u64)>, now: Millis) {
        let Some(leg) = self.legs.remove(uuid) else { return };
        self.gone_paths.insert(uuid.to_string(), leg.path);
        if let Some(m) = leg.member {
            self.related.retain(|(c, a, b)| !(c == &leg.bridge && (*a == m || *b == m)));
        }
        let going = self.going.contains(uuid);
        let was_feeding = match self.groups.get_mut(&leg.group) {
            Some(g) if g.feeder.as_deref() == Some(uuid) => {
                g.feeder = None;
                true
            }
            _ => false,
        };
        if was_feeding && switch && !going {
            let why = format!("the {} leg hung up ({cause})", leg.path.as_str());
            self.mix(&leg.group, &why, true, silence, now);
        }
        if !self.legs.values().any(|l| l.group == leg.group) {
            self.groups.remove(&leg.group);
        }
    }

    /// Makes the right leg of `group` feed the conference: the preferred path's leg if it is in
    /// the conference, else the leg already feeding, else any leg in the conference. `failed`:
    /// the feeding leg went (a failover), rather than a leg joining; `silence`: see
    /// [`gap::silence_start`]. Legs being hung up by handoffd are never chosen.
    pub(super) fn mix(&mut self, group: &str, why: &str, failed: bool, silence: Option<(u64, u64)>, now: Millis) {
        let Some(g) = self.groups.get(group).cloned() else { return };
        let joined: BTreeMap<&String, &MixLeg> = self
            .legs
            .iter()
            .filter(|(u, l)| l.group == group && l.member.is_some() && !self.going.contains(*u))
            .collect();
        let current = g.feeder.as_ref().filter(|f| joined.contains_key(f)).cloned();
        let want = choose_feeder(joined.iter().map(|(u, l)| (u.as_str(), l.path)), g.preferred, current.as_deref())
            .map(str::to_string);
        let Some(want) = want else {
            if let Some(g) = self.groups.get_mut(group) {
                g.feeder = None;
            }
            return;
        };
        if current.as_deref() == Some(want.as_str()) {
            return;
        }
        let to = self.legs[&want].clone();
        // Mute first, then unmute: a moment of silence, never the voice twice.
        if let Some(old) = current.as_ref().and_then(|u| self.legs.get(u)).cloned() {
            if let Some(m) = old.member {
                self.api(format!("conference {} mute {m}", old.bridge), now);
            }
        }
        let mut measured = false;
        if let Some(m) = to.member {
            let id = self.api(format!("conference {} unmute {m}", to.bridge), now);
            if let (true, Some(start)) = (failed, silence) {
                self.gaps.started(&to.bridge, m, id, start);
                measured = true;
            }
        }
        if let Some(g) = self.groups.get_mut(group) {
            g.feeder = Some(want.clone());
        }
        // The first leg to feed is no switch; every later change is. A measured failover is
        // reported with its gap when mod_conference confirms the unmute.
        if failed && !measured {
            self.events.push_back(DriverEvent::Failover { gap_ms: None });
        }
        if current.is_some() || failed {
            // The gap is measured later (when mod_conference confirms the unmute): not known here.
            self.input(Input::LegSwitched { uniqueid: want, to: to.path, reason: why.to_string(), gap_ms: None });
        }
    }
}

/// The leg that should feed a device's mix, of the legs in the conference (`joined`, with their
/// paths): the preferred path's, else the one feeding now (`current`), else the first.
pub(super) fn choose_feeder<'a>(
    joined: impl Iterator<Item = (&'a str, Path)> + Clone,
    preferred: Path,
    current: Option<&'a str>,
) -> Option<&'a str> {
    let first = joined.clone().next().map(|(u, _)| u);
    joined.into_iter().find(|(_, p)| *p == preferred).map(|(u, _)| u).or(current).or(first)
}
