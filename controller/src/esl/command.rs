//! Client commands and their wire form.
//!
//! A command is one line (`api status`), optionally followed by `Name: value` header lines, a
//! blank line, and for `sendevent`/`sendmsg` with a body, `Content-Length` bytes of body.
//! Encoding refuses anything that would let a value end the command early and start another
//! (CR or LF in a line, a colon in a header name, a hand-written `Content-Length`).

use super::message::EventFormat;
use std::fmt;

/// Why a command was not encoded (a caller mistake; nothing was sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A value holds CR or LF, which would end the command and inject another.
    #[error("ESL command {command}: {field} contains a line break (CR or LF); not sent")]
    LineBreak { command: &'static str, field: String },
    /// A header name is empty or holds a colon, a space or a line break.
    #[error(
        "ESL command {command}: header name {name:?} is empty or contains ':', whitespace or a line break; not sent"
    )]
    BadHeaderName { command: &'static str, name: String },
    /// `Content-Length` given as a header; the encoder writes it from the body.
    #[error("ESL command {command}: Content-Length is written from the body, not given as a header; not sent")]
    ContentLengthHeader { command: &'static str },
    /// A field that must be one word (a uuid, an event name, a filter header) is empty or
    /// holds whitespace.
    #[error("ESL command {command}: {field} {value:?} must be one non-empty word; not sent")]
    NotAWord { command: &'static str, field: &'static str, value: String },
}

/// A command to FreeSWITCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `auth <password>` (inbound, answering `auth/request`).
    Auth { password: String },
    /// `connect` (outbound: the first command; the reply carries the channel data).
    Connect,
    /// `event <format> <names...>`; names are event names, `ALL`, or `CUSTOM` followed by
    /// subclasses.
    Event { format: EventFormat, names: Vec<String> },
    /// `myevents [<format>] [<uuid>]`: only one channel's events (outbound: no uuid needed).
    MyEvents { format: Option<EventFormat>, uuid: Option<String> },
    /// `nixevent <names...>`.
    NixEvent { names: Vec<String> },
    /// `noevents`.
    NoEvents,
    /// `filter <header> <value>`.
    Filter { header: String, value: String },
    /// `filter delete <header> [<value>]`.
    FilterDelete { header: String, value: Option<String> },
    /// `api <command>`: answered by `api/response` once the command finishes.
    Api { command: String },
    /// `bgapi <command>` with an optional `Job-UUID` header: answered at once with the job's
    /// uuid; the output comes later as a BACKGROUND_JOB event (only when subscribed to it).
    Bgapi { command: String, job_uuid: Option<String> },
    /// `sendmsg [<uuid>]` with `call-command`, `execute-app-name`, ... headers, and an optional
    /// body. Without a uuid it goes to the socket's own channel (outbound).
    SendMsg { uuid: Option<String>, headers: Vec<(String, String)>, body: Option<Vec<u8>> },
    /// `sendevent <name>` with headers and an optional body.
    SendEvent { name: String, headers: Vec<(String, String)>, body: Option<Vec<u8>> },
    /// `linger [<seconds>]`: keep the socket after the channel hangs up (no number: until
    /// `exit`).
    Linger { seconds: Option<u32> },
    /// `nolinger`.
    NoLinger,
    /// `log <level>` (0-7 or a name): log lines as `log/data`.
    Log { level: String },
    /// `nolog`.
    NoLog,
    /// `divert_events on|off` (outbound).
    DivertEvents { on: bool },
    /// `exit`: `+OK bye`, a disconnect notice, then FreeSWITCH closes.
    Exit,
    /// Any other one-line command, sent as it is (e.g. `resume`).
    Other { line: String },
}

fn no_break(command: &'static str, field: &str, value: &str) -> Result<(), CommandError> {
    if value.contains(['\r', '\n']) {
        return Err(CommandError::LineBreak { command, field: field.to_string() });
    }
    Ok(())
}

fn word(command: &'static str, field: &'static str, value: &str) -> Result<(), CommandError> {
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(CommandError::NotAWord { command, field, value: value.escape_debug().to_string() });
    }
    Ok(())
}

fn header_lines(command: &'static str, headers: &[(String, String)], out: &mut Vec<u8>) -> Result<(), CommandError> {
    for (name, value) in headers {
        if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
            return Err(CommandError::BadHeaderName { command, name: name.escape_debug().to_string() });
        }
        if name.eq_ignore_ascii_case("Content-Length") {
            return Err(CommandError::ContentLengthHeader { command });
        }
        no_break(command, &format!("header {name}"), value)?;
        out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
    }
    Ok(())
}

impl Command {
    /// The command word (`api`, `sendmsg`, ...), for errors and logs.
    pub fn word(&self) -> &'static str {
        match self {
            Command::Auth { .. } => "auth",
            Command::Connect => "connect",
            Command::Event { .. } => "event",
            Command::MyEvents { .. } => "myevents",
            Command::NixEvent { .. } => "nixevent",
            Command::NoEvents => "noevents",
            Command::Filter { .. } | Command::FilterDelete { .. } => "filter",
            Command::Api { .. } => "api",
            Command::Bgapi { .. } => "bgapi",
            Command::SendMsg { .. } => "sendmsg",
            Command::SendEvent { .. } => "sendevent",
            Command::Linger { .. } => "linger",
            Command::NoLinger => "nolinger",
            Command::Log { .. } => "log",
            Command::NoLog => "nolog",
            Command::DivertEvents { .. } => "divert_events",
            Command::Exit => "exit",
            Command::Other { .. } => "other",
        }
    }

    /// `api <command>` (a convenience).
    pub fn api(command: impl Into<String>) -> Self {
        Command::Api { command: command.into() }
    }

    /// `bgapi <command>` without a Job-UUID (a convenience).
    pub fn bgapi(command: impl Into<String>) -> Self {
        Command::Bgapi { command: command.into(), job_uuid: None }
    }

    /// The first line, checked (no line breaks; words where words are required).
    fn first_line(&self) -> Result<String, CommandError> {
        let w = self.word();
        let words = |field: &'static str, names: &[String]| -> Result<String, CommandError> {
            for n in names {
                word(w, field, n)?;
            }
            Ok(names.join(" "))
        };
        Ok(match self {
            Command::Auth { password } => {
                no_break(w, "password", password)?;
                format!("auth {password}")
            }
            Command::Connect => "connect".into(),
            Command::Event { format, names } => {
                let names = words("event name", names)?;
                if names.is_empty() {
                    format!("event {format}")
                } else {
                    format!("event {format} {names}")
                }
            }
            Command::MyEvents { format, uuid } => {
                let mut line = String::from("myevents");
                if let Some(f) = format {
                    line.push(' ');
                    line.push_str(f.keyword());
                }
                if let Some(u) = uuid {
                    word(w, "uuid", u)?;
                    line.push(' ');
                    line.push_str(u);
                }
                line
            }
            Command::NixEvent { names } => format!("nixevent {}", words("event name", names)?),
            Command::NoEvents => "noevents".into(),
            Command::Filter { header, value } => {
                word(w, "header", header)?;
                no_break(w, "value", value)?;
                format!("filter {header} {value}")
            }
            Command::FilterDelete { header, value } => {
                word(w, "header", header)?;
                match value {
                    Some(v) => {
                        no_break(w, "value", v)?;
                        format!("filter delete {header} {v}")
                    }
                    None => format!("filter delete {header}"),
                }
            }
            Command::Api { command } => {
                no_break(w, "command", command)?;
                format!("api {command}")
            }
            Command::Bgapi { command, .. } => {
                no_break(w, "command", command)?;
                format!("bgapi {command}")
            }
            Command::SendMsg { uuid, .. } => match uuid {
                Some(u) => {
                    word(w, "uuid", u)?;
                    format!("sendmsg {u}")
                }
                None => "sendmsg".into(),
            },
            Command::SendEvent { name, .. } => {
                word(w, "event name", name)?;
                format!("sendevent {name}")
            }
            Command::Linger { seconds: Some(s) } => format!("linger {s}"),
            Command::Linger { seconds: None } => "linger".into(),
            Command::NoLinger => "nolinger".into(),
            Command::Log { level } => {
                word(w, "level", level)?;
                format!("log {level}")
            }
            Command::NoLog => "nolog".into(),
            Command::DivertEvents { on } => format!("divert_events {}", if *on { "on" } else { "off" }),
            Command::Exit => "exit".into(),
            Command::Other { line } => {
                no_break(w, "line", line)?;
                if line.trim().is_empty() {
                    return Err(CommandError::NotAWord { command: w, field: "line", value: line.clone() });
                }
                line.clone()
            }
        })
    }

    /// The bytes to send.
    pub fn encode(&self) -> Result<Vec<u8>, CommandError> {
        let w = self.word();
        let mut out = self.first_line()?.into_bytes();
        out.push(b'\n');
        let body_part = |headers: &[(String, String)], body: &Option<Vec<u8>>, out: &mut Vec<u8>| {
            header_lines(w, headers, out)?;
            if let Some(body) = body {
                out.extend_from_slice(format!("Content-Length: {}\n\n", body.len()).as_bytes());
                out.extend_from_slice(body);
                return Ok::<bool, CommandError>(true);
            }
            Ok(false)
        };
        let had_body = match self {
            Command::Bgapi { job_uuid: Some(id), .. } => {
                word(w, "Job-UUID", id)?;
                out.extend_from_slice(format!("Job-UUID: {id}\n").as_bytes());
                false
            }
            Command::SendMsg { headers, body, .. } | Command::SendEvent { headers, body, .. } => {
                body_part(headers, body, &mut out)?
            }
            _ => false,
        };
        if !had_body {
            out.push(b'\n');
        }
        Ok(out)
    }
}

impl fmt::Display for Command {
    /// The first line, at most 120 characters, the password masked: safe for logs and errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Command::Auth { .. } = self {
            return f.write_str("auth ********");
        }
        let line = match self.first_line() {
            Ok(line) => line,
            Err(_) => format!("{} (invalid)", self.word()),
        };
        let short: String = line.chars().take(120).collect();
        f.write_str(&short)?;
        if short.len() < line.len() {
            f.write_str("...")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(c: Command) -> String {
        String::from_utf8(c.encode().unwrap()).unwrap()
    }

    #[test]
    fn wire_forms() {
        assert_eq!(enc(Command::Auth { password: "ClueCon".into() }), "auth ClueCon\n\n");
        assert_eq!(enc(Command::api("")), "api \n\n");
        assert_eq!(
            enc(Command::Bgapi { command: "version".into(), job_uuid: Some("j-1".into()) }),
            "bgapi version\nJob-UUID: j-1\n\n"
        );
        assert_eq!(
            enc(Command::Event { format: EventFormat::Plain, names: vec!["CUSTOM".into(), "lab::ping".into()] }),
            "event plain CUSTOM lab::ping\n\n"
        );
        assert_eq!(
            enc(Command::FilterDelete { header: "Event-Subclass".into(), value: None }),
            "filter delete Event-Subclass\n\n"
        );
        assert_eq!(
            enc(Command::MyEvents { format: Some(EventFormat::Json), uuid: Some("u".into()) }),
            "myevents json u\n\n"
        );
        assert_eq!(enc(Command::Linger { seconds: Some(2) }), "linger 2\n\n");
        assert_eq!(
            enc(Command::SendMsg {
                uuid: None,
                headers: vec![("call-command".into(), "hangup".into())],
                body: Some(b"a\r\nb".to_vec())
            }),
            "sendmsg\ncall-command: hangup\nContent-Length: 4\n\na\r\nb"
        );
    }

    #[test]
    fn injection_is_refused() {
        let e = Command::api("status\n\nexit").encode().unwrap_err();
        assert_eq!(e, CommandError::LineBreak { command: "api", field: "command".into() });
        assert!(e.to_string().contains("line break"));
        assert!(Command::Auth { password: "x\r".into() }.encode().is_err());
        assert!(Command::Bgapi { command: "status".into(), job_uuid: Some("a\nb".into()) }.encode().is_err());
        let msg = |headers: Vec<(&str, &str)>| Command::SendMsg {
            uuid: Some("u".into()),
            headers: headers.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: None,
        };
        assert!(matches!(msg(vec![("a", "b\nc: d")]).encode(), Err(CommandError::LineBreak { .. })));
        assert!(matches!(msg(vec![("a: b", "c")]).encode(), Err(CommandError::BadHeaderName { .. })));
        assert!(matches!(msg(vec![("content-length", "3")]).encode(), Err(CommandError::ContentLengthHeader { .. })));
        assert!(matches!(
            Command::SendMsg { uuid: Some("u u".into()), headers: vec![], body: None }.encode(),
            Err(CommandError::NotAWord { field: "uuid", .. })
        ));
        assert!(Command::Event { format: EventFormat::Plain, names: vec!["A\nB".into()] }.encode().is_err());
        assert!(Command::Other { line: " ".into() }.encode().is_err());
    }

    #[test]
    fn display_hides_the_password() {
        assert_eq!(Command::Auth { password: "secret".into() }.to_string(), "auth ********");
        assert_eq!(Command::api("status").to_string(), "api status");
        assert!(Command::api("x".repeat(300)).to_string().ends_with("..."));
    }
}
