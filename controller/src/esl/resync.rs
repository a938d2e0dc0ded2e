//! Reading the state FreeSWITCH reports on request, to resynchronise after a reconnect:
//! `show channels as json` and `conference <name> json_list` api bodies.
//!
//! Shapes as recorded from FreeSWITCH 1.11.2:
//! - `show channels as json` with channels: `{"row_count":2,"rows":[{"uuid":...,...}]}`, all
//!   row values strings; with none: `{"row_count": 0}` and no `rows` key.
//! - `conference <name> json_list`: a tab-indented array of conferences, each with a
//!   `members` array; numbers and booleans are JSON numbers and booleans. A missing
//!   conference answers `-ERR Conference <name> not found`.

use serde::Deserialize;

/// Why an api body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResyncError {
    /// FreeSWITCH answered with an error instead of the list.
    #[error("FreeSWITCH refused: {0}")]
    Refused(String),
    /// The body is not the expected JSON.
    #[error("not the expected JSON: {0}")]
    Json(String),
}

fn refused(body: &str) -> Option<ResyncError> {
    let t = body.trim();
    (t.starts_with("-ERR") || t.starts_with("-USAGE")).then(|| ResyncError::Refused(t.to_string()))
}

/// One row of `show channels as json`. The named fields are the ones a resync needs; the
/// row's other fields are in `fields` as received.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ChannelRow {
    pub uuid: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Channel name, e.g. `sofia/internal/sipp1@127.0.0.1:5072`.
    pub name: String,
    /// Channel state, e.g. `CS_EXECUTE`.
    pub state: String,
    /// Call state, e.g. `ACTIVE`, `RINGING`, `HELD`.
    pub callstate: String,
    /// The uuid of the call this channel belongs to (empty on some B legs).
    pub call_uuid: String,
    pub cid_name: String,
    pub cid_num: String,
    pub dest: String,
    pub application: String,
    pub application_data: String,
    /// Creation time, epoch seconds as a string.
    pub created_epoch: String,
    #[serde(flatten)]
    pub fields: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct ShowChannels {
    #[serde(default)]
    row_count: u64,
    #[serde(default)]
    rows: Vec<ChannelRow>,
}

/// Parses the body of `api show channels as json`.
pub fn parse_show_channels_json(body: &str) -> Result<Vec<ChannelRow>, ResyncError> {
    if let Some(e) = refused(body) {
        return Err(e);
    }
    let parsed: ShowChannels = serde_json::from_str(body).map_err(|e| ResyncError::Json(e.to_string()))?;
    if parsed.rows.len() as u64 != parsed.row_count {
        return Err(ResyncError::Json(format!("row_count {} but {} rows", parsed.row_count, parsed.rows.len())));
    }
    Ok(parsed.rows)
}

/// A member's flags in `json_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MemberFlags {
    pub can_hear: bool,
    pub can_see: bool,
    pub can_speak: bool,
    pub hold: bool,
    pub mute_detect: bool,
    pub talking: bool,
    pub has_video: bool,
    pub has_floor: bool,
    pub is_moderator: bool,
    pub end_conference: bool,
}

/// One member of a conference in `json_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConferenceMember {
    /// `caller` (or `recording_node` for a recording, which has no channel).
    #[serde(rename = "type")]
    pub kind: String,
    /// Member id (starts at 1), used by `conference <name> mute <id>` and friends.
    pub id: u64,
    /// The member's channel uuid.
    pub uuid: String,
    pub caller_id_name: String,
    pub caller_id_number: String,
    pub flags: MemberFlags,
    /// Seconds since the member joined.
    pub join_time: u64,
    pub energy: i64,
}

/// One conference in `json_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Conference {
    pub conference_name: String,
    pub conference_uuid: String,
    pub member_count: u64,
    pub ghost_count: u64,
    pub rate: u64,
    /// Seconds the conference has run.
    pub run_time: u64,
    pub locked: bool,
    pub running: bool,
    pub answered: bool,
    pub members: Vec<ConferenceMember>,
}

/// Parses the body of `api conference [<name>] json_list`.
pub fn parse_conference_json_list(body: &str) -> Result<Vec<Conference>, ResyncError> {
    if let Some(e) = refused(body) {
        return Err(e);
    }
    serde_json::from_str(body).map_err(|e| ResyncError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_refused() {
        assert_eq!(parse_show_channels_json("{\"row_count\": 0}\n"), Ok(vec![]));
        assert!(matches!(parse_show_channels_json("{\"row_count\": 2}"), Err(ResyncError::Json(_))));
        assert_eq!(
            parse_conference_json_list("-ERR Conference test not found\n"),
            Err(ResyncError::Refused("-ERR Conference test not found".into()))
        );
        assert!(matches!(parse_conference_json_list("nonsense"), Err(ResyncError::Json(_))));
    }
}
