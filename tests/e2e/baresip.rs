//! baresip, a real softphone from Debian, as the phone's app: it runs inside the testbed root
//! with a config directory of its own (`<instance>/baresip-<port>/`), sends a WAV file as its
//! microphone (the `aufile` source), writes what it hears into another WAV file, and is driven
//! over `ctrl_tcp` (JSON commands and events in netstrings). Its log is kept for panic messages.

use crate::testbed::Asterisk;
use crate::{repo_root, wait_for};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines of baresip's log kept (the newest; older ones are dropped).
const LOG_LINES: usize = 2000;

/// A WAV file (16-bit PCM, mono) of `samples` at `rate` Hz.
pub fn wav(samples: &[i16], rate: u32) -> Vec<u8> {
    let data = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// How a baresip instance is set up.
pub struct Setup<'a> {
    /// The SIP account's user and digest password (the PJSIP app endpoint's).
    pub user: &'a str,
    pub password: &'a str,
    /// baresip's SIP port on 127.0.0.1.
    pub sip_port: u16,
    /// Its RTP port range (what a Wi-Fi cut drops).
    pub rtp_ports: (u16, u16),
    /// The codecs it offers, preferred first (baresip's `audio_codecs`, e.g. `opus/48000/1,pcmu`; baresip 1.1.0 does not resample its source, so the WAV file must have the codec's rate).
    pub codecs: &'a str,
    /// Opus's bit rate (bit/s) and application (`voip`: SILK at low rates, as a phone on mobile
    /// data codes speech; `audio`: CELT).
    pub opus_bitrate: u32,
    pub opus_application: &'a str,
    /// Its microphone: a WAV file (see [`wav`]). The call ends when it ends.
    pub source_wav: &'a [u8],
}

pub struct Baresip {
    child: Child,
    ctrl: TcpStream,
    log: Arc<Mutex<Vec<String>>>,
    /// Events and responses from ctrl_tcp (JSON).
    messages: Arc<Mutex<Vec<serde_json::Value>>>,
    dir: PathBuf,
}

impl Baresip {
    /// Writes the config into the instance directory and starts baresip in the testbed root.
    pub fn start(ast: &Asterisk, setup: &Setup) -> Self {
        let name = format!("baresip-{}", setup.sip_port);
        let inside = format!("/opt/handoff-testbed/{name}");
        let dir = ast.instance_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("make {}: {e}", dir.display()));
        std::fs::write(dir.join("source.wav"), setup.source_wav).expect("write baresip's source.wav");
        let ctrl_port = free_port();
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip}\n\
             sip_transports udp\n\
             net_interface 127.0.0.1\n\
             call_local_timeout 120\n\
             call_max_calls 2\n\
             audio_source aufile,{inside}/source.wav\n\
             audio_player aufile,{inside}/heard.wav\n\
             audio_alert aufile,{inside}/alert.wav\n\
             ausrc_format s16\n\
             auplay_format s16\n\
             auenc_format s16\n\
             audec_format s16\n\
             rtp_ports {lo}-{hi}\n\
             rtp_timeout 0\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module opus.so\n\
             module aufile.so\n\
             module_app account.so\n\
             module_app menu.so\n\
             module_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
             opus_bitrate {bitrate}\n\
             opus_application {application}\n\
             opus_stereo no\n\
             opus_sprop_stereo no\n",
            sip = setup.sip_port,
            lo = setup.rtp_ports.0,
            hi = setup.rtp_ports.1,
            bitrate = setup.opus_bitrate,
            application = setup.opus_application,
        );
        std::fs::write(dir.join("config"), config).expect("write baresip's config");
        let account = format!(
            "<sip:{u}@127.0.0.1>;auth_user={u};auth_pass={p};regint=0;answermode=auto;audio_codecs={c}\n",
            u = setup.user,
            p = setup.password,
            c = setup.codecs,
        );
        std::fs::write(dir.join("accounts"), account).expect("write baresip's accounts");
        std::fs::write(dir.join("contacts"), "").expect("write baresip's contacts");

        let mut child = Command::new(repo_root().join("tests/testbed/testbed"))
            .args(["chroot", "/usr/bin/baresip", "-f", &inside, "-v"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start baresip: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        for out in [
            child.stdout.take().map(|o| Box::new(o) as Box<dyn Read + Send>),
            child.stderr.take().map(|o| Box::new(o) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    if l.len() >= LOG_LINES {
                        l.remove(0);
                    }
                    l.push(line);
                }
            });
        }
        let ctrl = wait_for(Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", ctrl_port)).ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "baresip's ctrl_tcp never listened on 127.0.0.1:{ctrl_port}; baresip's log:\n{}",
                    log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
                )
            });
        let messages = Arc::new(Mutex::new(Vec::new()));
        let reader = ctrl.try_clone().expect("clone the ctrl_tcp connection");
        let m = messages.clone();
        std::thread::spawn(move || read_netstrings(reader, &m));
        Self { child, ctrl, log, messages, dir }
    }

    /// baresip's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// Sends a ctrl_tcp command (`dial`, `hangup`, ...).
    pub fn command(&self, command: &str, params: &str) {
        let body = serde_json::json!({"command": command, "params": params, "token": command}).to_string();
        let frame = format!("{}:{},", body.len(), body);
        (&self.ctrl).write_all(frame.as_bytes()).unwrap_or_else(|e| panic!("ctrl_tcp {command}: {e}\n{}", self.log()));
    }

    /// The ctrl_tcp events so far whose `type` is `kind` (e.g. `CALL_ESTABLISHED`).
    pub fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|m| {
                m.get("event").and_then(|e| e.as_bool()) == Some(true)
                    && m.get("type").and_then(|t| t.as_str()) == Some(kind)
            })
            .cloned()
            .collect()
    }

    /// Waits for an event `kind`; what went wrong if none comes within `limit` (baresip's
    /// ctrl_tcp messages; its log is [`Baresip::log`]).
    pub fn wait_event(&self, kind: &str, limit: Duration) -> Result<serde_json::Value, String> {
        wait_for(limit, || self.events(kind).into_iter().next()).ok_or_else(|| {
            format!(
                "baresip sent no {kind} event within {} s; its ctrl_tcp messages: {:?}",
                limit.as_secs(),
                self.messages.lock().unwrap_or_else(|e| e.into_inner()),
            )
        })
    }

    /// What baresip heard (the WAV its aufile player wrote), if it wrote one.
    pub fn heard_wav(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join("heard.wav")).ok()
    }
}

/// Reads `len:{json},` frames until the connection closes; keeps each message (bounded).
fn read_netstrings(mut conn: TcpStream, into: &Mutex<Vec<serde_json::Value>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(colon) = buf.iter().position(|&b| b == b':') {
            let Some(len) = std::str::from_utf8(&buf[..colon]).ok().and_then(|s| s.trim().parse::<usize>().ok()) else {
                return; // not a netstring: stop reading rather than guess
            };
            if buf.len() < colon + 1 + len + 1 {
                break;
            }
            let body = buf[colon + 1..colon + 1 + len].to_vec();
            buf.drain(..colon + 1 + len + 1);
            if let Ok(v) = serde_json::from_slice(&body) {
                let mut m = into.lock().unwrap_or_else(|e| e.into_inner());
                if m.len() < 10_000 {
                    m.push(v);
                }
            }
        }
        if buf.len() > 1 << 20 {
            return; // a frame larger than any baresip sends
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let quit = r#"{"command":"quit"}"#;
            let _ = self.ctrl.write_all(format!("{}:{quit},", quit.len()).as_bytes());
            if wait_for(Duration::from_secs(2), || self.child.try_wait().ok().flatten()).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
