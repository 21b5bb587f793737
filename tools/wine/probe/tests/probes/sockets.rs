//! Probe 2: a socket pair emulated over loopback TCP, as Python's
//! `socket.socketpair` does on Windows, and passing one end to another
//! process (DuplicateHandle pulled or pushed, or WSADuplicateSocketW).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::windows::io::{AsRawSocket, FromRawSocket, IntoRawSocket};
use std::time::Instant;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::Storage::FileSystem::WriteFile;

use windows_sys::Win32::Networking::WinSock::{
    FROM_PROTOCOL_INFO, INVALID_SOCKET, MSG_WAITALL, POLLHUP, POLLRDNORM, SOCKET,
    WSA_FLAG_OVERLAPPED, WSADATA, WSADuplicateSocketW, WSAGetLastError, WSAPOLLFD,
    WSAPROTOCOL_INFOW, WSAPoll, WSASocketW, WSAStartup, closesocket, recv, send,
};
use windows_sys::Win32::System::Threading::PROCESS_DUP_HANDLE;

use crate::common::*;

/// Python's `socket.socketpair` on Windows: listen on 127.0.0.1:0, connect,
/// accept, close the listener; the accepted peer must be the connector.
pub fn socketpair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let a = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (b, peer) = listener.accept().expect("accept");
    assert_eq!(
        peer,
        a.local_addr().unwrap(),
        "someone else connected first"
    );
    drop(listener);
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// WSAPoll on one socket for POLLRDNORM: (return value, revents, ms taken).
pub fn poll_read(s: &TcpStream, timeout_ms: i32) -> (i32, i16, u128) {
    let mut fd = WSAPOLLFD {
        fd: s.as_raw_socket() as SOCKET,
        events: POLLRDNORM,
        revents: 0,
    };
    let start = Instant::now();
    // SAFETY: one valid WSAPOLLFD.
    let n = unsafe { WSAPoll(&mut fd, 1, timeout_ms) };
    (n, fd.revents, start.elapsed().as_millis())
}

#[test]
fn loopback_socketpair_data_eof_and_wsapoll() {
    let _serial = serial();
    let (mut a, mut b) = socketpair();
    a.set_read_timeout(Some(TIMEOUT)).unwrap();
    b.set_read_timeout(Some(TIMEOUT)).unwrap();

    a.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    b.write_all(b"world").unwrap();
    a.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"world");

    // 16 MiB one way while nothing reads the other way.
    const BIG: usize = 16 << 20;
    let data: Vec<u8> = (0..BIG).map(|i| (i * 7 + i / 4093) as u8).collect();
    let start = Instant::now();
    let got = std::thread::scope(|scope| {
        let writer = scope.spawn(|| a.write_all(&data));
        let mut got = vec![0u8; BIG];
        b.read_exact(&mut got).unwrap();
        writer.join().unwrap().unwrap();
        got
    });
    let secs = start.elapsed().as_secs_f64();
    assert!(got == data, "the 16 MiB message came through changed");
    println!(
        "socketpair: 16 MiB in {:.0} ms ({:.0} MB/s)",
        secs * 1e3,
        BIG as f64 / secs / 1e6
    );

    // Nothing to read: WSAPoll times out.
    let (n, revents, ms) = poll_read(&b, 100);
    println!("WSAPoll, nothing sent: {n}, revents {revents:#x}, {ms} ms");
    assert_eq!((n, revents), (0, 0));
    assert!(
        ms >= 90,
        "WSAPoll returned after {ms} ms, before its 100 ms"
    );
    // One byte waiting: readable.
    a.write_all(b"x").unwrap();
    let (n, revents, ms) = poll_read(&b, 5000);
    println!("WSAPoll, 1 byte sent: {n}, revents {revents:#x}, {ms} ms");
    assert_eq!((n, revents), (1, POLLRDNORM));
    let mut one = [0u8; 1];
    b.read_exact(&mut one).unwrap();
    // The peer closes: WSAPoll reports it, and a read sees the end.
    drop(a);
    let (n, revents, ms) = poll_read(&b, 5000);
    println!("WSAPoll, peer closed: {n}, revents {revents:#x}, {ms} ms");
    // Wine 8 gives POLLHUP alone (no POLLRDNORM), at once.
    assert_eq!((n, revents), (1, POLLHUP), "after the peer closed");
    assert_eq!(b.read(&mut buf).unwrap(), 0, "EOF once the peer closed");
}

/// Sends "ping" through `a`, whose peer `b` a child now holds too, and
/// returns what the child reported about each call on its copy; checks that
/// the stream ends once the child has gone and this process closed `b`.
fn ping_child(mut a: TcpStream, b: TcpStream, kid: &mut Kid) -> String {
    a.set_read_timeout(Some(TIMEOUT)).unwrap();
    a.write_all(b"ping").unwrap();
    let report = kid.recv();
    assert_eq!(kid.wait(), 0);
    drop(b);
    let mut got = Vec::new();
    a.read_to_end(&mut got).expect("read to the end");
    println!(
        "{report}; the parent read {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(got, b"PING", "the child's answer, then the end");
    report
}

#[test]
fn socket_pulled_by_duplicatehandle_can_recv_but_not_send_under_wine() {
    let _serial = serial();
    let (a, b) = socketpair();
    let me = current_process();
    let transit = duplicate(me, b.as_raw_socket() as usize as _, me, false);
    let mut kid = Kid::spawn(
        "sock-echo",
        &["pull".into(), std::process::id().to_string(), hv(transit)],
    );
    let report = ping_child(a, b, &mut kid);
    assert_eq!(report, WINE_DUPLICATEHANDLE);
}

/// What a child can do with a socket it got by DuplicateHandle, under Wine 8:
/// ws2_32 keeps a per-process list of the sockets the process made itself,
/// and send (WSASendTo) and closesocket refuse any other with WSAENOTSOCK,
/// while recv works. Real Windows has no such list (not checked here).
const WINE_DUPLICATEHANDLE: &str =
    "recv ok \"ping\", send err 10038, WriteFile ok, closesocket err 10038, CloseHandle ok";

#[test]
fn socket_pushed_by_duplicatehandle_can_recv_but_not_send_under_wine() {
    let _serial = serial();
    let (a, b) = socketpair();
    let mut kid = Kid::spawn("sock-echo", &["stdin".into()]);
    let target = open_process(kid.pid(), PROCESS_DUP_HANDLE);
    let value = duplicate(
        current_process(),
        b.as_raw_socket() as usize as _,
        raw(&target),
        false,
    );
    kid.send(&hv(value));
    let report = ping_child(a, b, &mut kid);
    assert_eq!(report, WINE_DUPLICATEHANDLE);
}

#[test]
fn socket_shared_by_wsaduplicatesocket_works_in_the_child() {
    let _serial = serial();
    let (a, b) = socketpair();
    let mut kid = Kid::spawn("sock-echo", &["wsa".into()]);
    // SAFETY: all-zero is a valid WSAPROTOCOL_INFOW.
    let mut info: WSAPROTOCOL_INFOW = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer.
    let r = unsafe { WSADuplicateSocketW(b.as_raw_socket() as SOCKET, kid.pid(), &mut info) };
    // SAFETY: no preconditions.
    assert_eq!(r, 0, "WSADuplicateSocketW: error {}", unsafe {
        WSAGetLastError()
    });
    kid.send(&to_hex(&info));
    let report = ping_child(a, b, &mut kid);
    assert_eq!(report, "recv ok \"ping\", send ok, closesocket ok");
}

/// What `WSAPoll` does with a socket that came by `DuplicateHandle`, and
/// whether the receiver can make it a socket of its own: Wine's `WSAPoll`
/// refuses a socket not in the process's own list, so a receiver that must
/// wait for data duplicates the socket to itself with `WSADuplicateSocketW`
/// and `WSASocketW` (the documented way, also valid on Windows).
#[test]
fn a_socket_pulled_by_duplicatehandle_is_adopted_by_duplicating_it_to_oneself() {
    let _serial = serial();
    let (a, b) = socketpair();
    let me = current_process();
    let transit = duplicate(me, b.as_raw_socket() as usize as _, me, false);
    let mut kid = Kid::spawn("sock-adopt", &[std::process::id().to_string(), hv(transit)]);
    let report = ping_child(a, b, &mut kid);
    assert_eq!(report, WINE_ADOPTED);
}

/// Wine 8: `WSAPoll` on the pulled socket fails with `WSAENOTSOCK`; the
/// adopted copy polls, sends and closes as a socket of this process.
const WINE_ADOPTED: &str = "poll before err 10038, adopt ok, poll ok 1, recv ok \"ping\", send ok, \
     closesocket ok";

/// Child of the probe above: pulls the socket, tries `WSAPoll`, adopts it,
/// waits for the ping with `WSAPoll`, then echoes as [`child_echo`] does.
pub fn child_adopt(args: &[String]) -> i32 {
    winsock_start();
    let a = open_process(num(args, 0) as u32, PROCESS_DUP_HANDLE);
    let pulled = duplicate(raw(&a), handle_arg(&args[1]), current_process(), true) as SOCKET;
    let poll = |s: SOCKET, timeout_ms: i32| {
        let mut fd = WSAPOLLFD {
            fd: s,
            events: POLLRDNORM,
            revents: 0,
        };
        // SAFETY: one valid WSAPOLLFD.
        match unsafe { WSAPoll(&mut fd, 1, timeout_ms) } {
            // SAFETY: no preconditions.
            n if n < 0 => format!("err {}", unsafe { WSAGetLastError() }),
            n => format!("ok {n}"),
        }
    };
    let mut report = vec![format!("poll before {}", poll(pulled, 0))];
    // SAFETY: all-zero is a valid WSAPROTOCOL_INFOW.
    let mut info: WSAPROTOCOL_INFOW = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer.
    let dup = unsafe { WSADuplicateSocketW(pulled, std::process::id(), &mut info) };
    let adopted = if dup == 0 {
        socket_from_info(&info)
    } else {
        // SAFETY: no preconditions.
        Err(unsafe { WSAGetLastError() })
    };
    let sock = match adopted {
        Ok(s) => {
            report.push("adopt ok".into());
            // SAFETY: the pulled handle is ours; the adopted copy lives on.
            unsafe { CloseHandle(pulled as HANDLE) };
            s
        }
        Err(e) => {
            report.push(format!("adopt err {e}"));
            pulled
        }
    };
    report.push(format!("poll {}", poll(sock, 5000)));
    report.extend(echo(sock));
    say(&report.join(", "));
    0
}

/// `WSASocketW` from a `WSADuplicateSocketW` record made for this process;
/// the Winsock error otherwise.
fn socket_from_info(info: &WSAPROTOCOL_INFOW) -> Result<SOCKET, i32> {
    // SAFETY: `info` came from WSADuplicateSocketW for this process.
    let s = unsafe {
        WSASocketW(
            FROM_PROTOCOL_INFO,
            FROM_PROTOCOL_INFO,
            FROM_PROTOCOL_INFO,
            info,
            0,
            WSA_FLAG_OVERLAPPED,
        )
    };
    if s == INVALID_SOCKET {
        // SAFETY: no preconditions.
        Err(unsafe { WSAGetLastError() })
    } else {
        Ok(s)
    }
}

pub fn to_hex(info: &WSAPROTOCOL_INFOW) -> String {
    // SAFETY: a plain-data struct viewed as its bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (info as *const WSAPROTOCOL_INFOW).cast::<u8>(),
            std::mem::size_of::<WSAPROTOCOL_INFOW>(),
        )
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> WSAPROTOCOL_INFOW {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect();
    assert_eq!(bytes.len(), std::mem::size_of::<WSAPROTOCOL_INFOW>());
    // SAFETY: as many bytes as the plain-data struct has.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) }
}

/// WSAStartup for a process that gets a SOCKET without having made one
/// through std (which starts Winsock lazily).
pub fn winsock_start() {
    // SAFETY: all-zero is a valid WSADATA.
    let mut data: WSADATA = unsafe { std::mem::zeroed() };
    // SAFETY: `data` is a valid out-pointer.
    assert_eq!(unsafe { WSAStartup(0x202, &mut data) }, 0, "WSAStartup");
}

/// Gets a SOCKET the way args[0] says ("pull" PID VALUE, "stdin": a pushed
/// value on stdin, "wsa": WSAPROTOCOL_INFOW bytes in hex on stdin).
pub fn receive_socket(args: &[String]) -> TcpStream {
    winsock_start();
    let s: SOCKET = match args[0].as_str() {
        "pull" => {
            let a = open_process(num(args, 1) as u32, PROCESS_DUP_HANDLE);
            duplicate(raw(&a), handle_arg(&args[2]), current_process(), true) as SOCKET
        }
        "stdin" => handle_arg(&stdin_line()) as SOCKET,
        "wsa" => socket_from_info(&from_hex(&stdin_line()))
            .unwrap_or_else(|e| panic!("WSASocketW: error {e}")),
        how => panic!("unknown way to get a socket: {how}"),
    };
    // SAFETY: this process owns `s` now.
    unsafe { TcpStream::from_raw_socket(s as u64) }
}

/// Child: reads 4 bytes from the socket it received and sends them back in
/// upper case, then closes it; says how each call went. If `send` fails, it
/// tries WriteFile on the socket's handle, and CloseHandle if closesocket
/// fails.
pub fn child_echo(args: &[String]) -> i32 {
    let s = receive_socket(args);
    say(&echo(s.into_raw_socket() as SOCKET).join(", "));
    0
}

/// Reads 4 bytes from `sock`, sends them back in upper case, closes it;
/// says how each call went (with `WriteFile` if `send` fails, and
/// `CloseHandle` if `closesocket` does).
fn echo(sock: SOCKET) -> Vec<String> {
    let mut report = Vec::new();
    let mut buf = [0u8; 4];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { recv(sock, buf.as_mut_ptr(), 4, MSG_WAITALL) };
    if n == 4 {
        report.push(format!("recv ok {:?}", String::from_utf8_lossy(&buf)));
    } else {
        // SAFETY: no preconditions.
        report.push(format!("recv err {}", unsafe { WSAGetLastError() }));
    }
    buf.make_ascii_uppercase();
    // SAFETY: `buf` is readable for its length.
    if unsafe { send(sock, buf.as_ptr(), 4, 0) } == 4 {
        report.push("send ok".into());
    } else {
        // SAFETY: no preconditions.
        report.push(format!("send err {}", unsafe { WSAGetLastError() }));
        let mut n = 0;
        // SAFETY: a socket is a file handle; `buf` and `n` are valid.
        let ok = unsafe {
            WriteFile(
                sock as HANDLE,
                buf.as_ptr(),
                4,
                &mut n,
                std::ptr::null_mut(),
            )
        };
        report.push(if ok != 0 && n == 4 {
            "WriteFile ok".into()
        } else {
            format!("WriteFile err {}", last_error())
        });
    }
    // SAFETY: this process owns `sock`.
    if unsafe { closesocket(sock) } == 0 {
        report.push("closesocket ok".into());
    } else {
        // SAFETY: no preconditions.
        report.push(format!("closesocket err {}", unsafe { WSAGetLastError() }));
        // SAFETY: the handle is still open, and this process owns it.
        let ok = unsafe { CloseHandle(sock as HANDLE) };
        report.push(if ok != 0 {
            "CloseHandle ok".into()
        } else {
            format!("CloseHandle err {}", last_error())
        });
    }
    report
}
