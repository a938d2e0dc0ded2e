//! handoffd's goodbye to FreeSWITCH on SIGTERM, through the real daemon loop on a loopback
//! socket: a peer plays FreeSWITCH's recorded bytes (22's handshake and empty channel list,
//! 01's answer to `exit`), the daemon is told to stop, and it must send `exit` and read the
//! goodbye before it closes. The shipped handoffd closed without a word (22–28 end in
//! `c2s_eof` followed by a notice nobody read).

// Clock, tokio and sockets are allowed here: a test that drives real processes and sockets (controller/clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod esl_support;

use esl_support::{load, Dir};
use handoff::config::Config;
use handoff::daemon::{run, Controller};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads until `want` has arrived (or the peer closed), returning what came.
async fn read_until(s: &mut tokio::net::TcpStream, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the daemon answers in time")
            .expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[tokio::test]
async fn on_shutdown_handoffd_says_exit_and_reads_freeswitchs_goodbye() {
    let single = load("22_single_call");
    let s2c: Vec<&[u8]> = single.chunks.iter().filter(|c| c.dir == Dir::S2c).map(|c| c.bytes.as_slice()).collect();
    let (auth_request, accepted, subscribed, no_channels) = (s2c[0], s2c[1], s2c[2], s2c[3]);
    assert_eq!(no_channels, b"Content-Type: api/response\nContent-Length: 17\n\n{\"row_count\": 0}\n");
    let exit = load("01_auth_ok_exit");
    let goodbye = exit.chunks.iter().rfind(|c| c.dir == Dir::S2c).expect("+OK bye and the notice").bytes.clone();
    assert!(goodbye.starts_with(b"Content-Type: command/reply\nReply-Text: +OK bye\n\n"));

    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let d = dir.path().display();
    let yaml = format!(
        "pbx: freeswitch\nesl:\n  host: 127.0.0.1\n  port: {port}\n  password: fslab-esl-pw\n\
         store:\n  path: {d}/store\n  pepper_file: {d}/pepper\napi:\n  listen: \"\"\n  admin_token_file: {d}/token\n\
         metrics:\n  listen: \"\"\n"
    );
    let cfg = Config::parse(&yaml, "handoffd.yaml").expect("config");
    let ctl = Controller::open(cfg).expect("controller");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = run(ctl, async move {
        let _ = stop_rx.await;
    });
    // FreeSWITCH's side, in the same task as the daemon (its future is not Send).
    let freeswitch = async move {
        let (mut fs, _) = listener.accept().await.expect("handoffd connects");
        fs.write_all(auth_request).await.expect("write");
        assert_eq!(read_until(&mut fs, b"\n\n").await, b"auth fslab-esl-pw\n\n");
        fs.write_all(accepted).await.expect("write");
        let sub = read_until(&mut fs, b"api show channels as json\n\n").await;
        assert!(sub.starts_with(b"event json CHANNEL_CREATE"), "{}", String::from_utf8_lossy(&sub));
        fs.write_all(subscribed).await.expect("write");
        fs.write_all(no_channels).await.expect("write");
        // Ready: now SIGTERM (the shutdown future completes).
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        stop_tx.send(()).expect("stop");
        let said = read_until(&mut fs, b"exit\n\n").await;
        assert_eq!(said, b"exit\n\n", "handoffd says exit before it closes");
        fs.write_all(&goodbye).await.expect("write");
        // handoffd read the goodbye and closed: EOF.
        let rest = read_until(&mut fs, b"never").await;
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    };
    let (result, ()) =
        tokio::time::timeout(std::time::Duration::from_secs(10), async { tokio::join!(daemon, freeswitch) })
            .await
            .expect("the daemon stops");
    assert!(result.is_ok(), "{result:?}");
}
