//! A `*86` leg that brings no PIN: refused by the driver itself, so that it never reaches the
//! PIN check and never counts towards the user's lockout.
//!
//! `dialplans/freeswitch/handoff.xml` refuses an empty PIN before it parks the leg; this is
//! the same rule for dial plans written before that (recording 27: `handoff_token: pin-`).
//! When the prompt file is missing, `play_and_get_digits` returns at once: the PARK event then
//! says `variable_playback_ms` is no more than the 250 ms `silence_stream` the dial plan plays
//! after the prompt (250 in recording 27), and the log names the prompt.

use crate::esl::Event;

/// The prompt `handoff.xml` plays for `*86`.
pub const PIN_PROMPT: &str = "ivr/ivr-please_enter_pin_followed_by_pound.wav";

/// The refusal reason for an empty PIN (set as `handoff_reason` on the channel).
pub const EMPTY_PIN_REASON: &str = "move refused: no PIN keyed in (not counted as a wrong PIN)";

/// Whether the leg's token is a PIN prompt that returned no digits.
pub fn is_empty_pin(token: &str) -> bool {
    token == "pin-"
}

/// The log line for an empty PIN: names the prompt when nothing but the trailing silence
/// was played.
pub fn empty_pin_log(uuid: &str, park: &Event) -> String {
    let played: Option<u64> = park.header("variable_playback_ms").and_then(|v| v.parse().ok());
    match played {
        Some(ms) if ms <= 250 => format!(
            "FreeSWITCH channel {uuid}: *86 brought no PIN and only {ms} ms were played: the prompt {PIN_PROMPT} \
             seems missing (install FreeSWITCH's sounds); refused, not counted as a wrong PIN"
        ),
        _ => format!("FreeSWITCH channel {uuid}: *86 brought no PIN; refused, not counted as a wrong PIN"),
    }
}
