//! FreeSWITCH's names for the Q.850 hang-up causes: the names `uuid_kill` is sent and the
//! names its `CHANNEL_HANGUP` events carry, both ways.

/// The Q.850 cause codes handoffd sends, with FreeSWITCH's names for them. FreeSWITCH has no
/// name for 26 (NON_SELECTED_USER_CLEARING): see [`crate::hangup_cause::freeswitch_kill_cause`].
pub const CAUSES: &[(u32, &str)] = &[
    (1, "UNALLOCATED_NUMBER"),
    (3, "NO_ROUTE_DESTINATION"),
    (16, "NORMAL_CLEARING"),
    (17, "USER_BUSY"),
    (18, "NO_USER_RESPONSE"),
    (19, "NO_ANSWER"),
    (20, "SUBSCRIBER_ABSENT"),
    (21, "CALL_REJECTED"),
    (27, "DESTINATION_OUT_OF_ORDER"),
    (28, "INVALID_NUMBER_FORMAT"),
    (31, "NORMAL_UNSPECIFIED"),
    (34, "NORMAL_CIRCUIT_CONGESTION"),
    (38, "NETWORK_OUT_OF_ORDER"),
    (41, "NORMAL_TEMPORARY_FAILURE"),
    (42, "SWITCH_CONGESTION"),
    (58, "BEARERCAPABILITY_NOTAVAIL"),
    (102, "RECOVERY_ON_TIMER_EXPIRE"),
];

/// FreeSWITCH causes outside Q.850 and the Q.850 code FreeSWITCH reports for them (as seen in
/// `variable_hangup_cause_q850` of the recordings).
const CAUSE_ALIASES: &[(&str, u32)] = &[("ORIGINATOR_CANCEL", 16), ("MANAGER_REQUEST", 16)];

/// A cause's name (`NORMAL_CLEARING` for codes not in [`CAUSES`]).
pub fn cause_name(code: u32) -> &'static str {
    CAUSES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n).unwrap_or("NORMAL_CLEARING")
}

/// A cause name's Q.850 code (0 when unknown).
pub fn cause_code(name: &str) -> u32 {
    CAUSES
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(name))
        .map(|(c, _)| *c)
        .or_else(|| CAUSE_ALIASES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, c)| *c))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_map_both_ways() {
        assert_eq!(cause_name(16), "NORMAL_CLEARING");
        assert_eq!(cause_name(26), "NORMAL_CLEARING", "FreeSWITCH has no name for 26");
        assert_eq!(cause_name(999), "NORMAL_CLEARING");
        assert_eq!(cause_code("user_busy"), 17);
        assert_eq!(cause_code("ORIGINATOR_CANCEL"), 16);
        assert_eq!(cause_code("NO_SUCH_THING"), 0);
    }
}
