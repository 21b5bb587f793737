//! Handles beside bytes on Windows: what `SCM_RIGHTS` does on Unix, for the
//! sockets of a `socketpair` (kind `Framed`).
//!
//! Every write on such a socket is a packet: an 8-byte header (the data's
//! length and the number of handles, little-endian `u32`s), a 16-byte
//! record per handle, then the data. A record names the sending process,
//! a copy of the handle the sender made for the journey, and the handle's
//! kind; the reader takes the copy out of the sender with
//! `DuplicateHandle(.., DUPLICATE_CLOSE_SOURCE)` (`super::import_handle`).
//! So, as with `SCM_RIGHTS`, each send carries its own copies: the same
//! encoded message may go to several processes, and the sender may close
//! its handle as soon as the send returns. (A copy whose packet is never
//! read stays open in the sender until it ends; a reader can take a copy
//! only while the sender lives.)
//!
//! A write that the socket takes only part of leaves the rest of the
//! packet's data owed: the next write on the socket continues it (callers
//! resume a stream with the bytes that follow, as they do on Unix). A read
//! returns bytes of one packet only, and the handles on the read that
//! starts a packet. Both states are per socket and per process: a packet
//! must be read by one process, which mproc's users of these sockets
//! guarantee (a frame is read whole, under the channel's lock where several
//! processes share a socket). Doorbells, which any number of processes
//! read, use plain sockets instead.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, OnceLock};

use windows_sys::Win32::Networking::WinSock::{POLLWRNORM, SOCKET};

use super::handle::{Kind, OwnedFd, RawFd};
use super::net::{recv_plain, send_plain, wait_for};

const HEADER: usize = 8;
const RECORD: usize = 16;

/// What a socket owes in the packet being written: data bytes left.
type Owed = Arc<Mutex<usize>>;

/// Where a socket's reader is in the packet being read.
#[derive(Default)]
struct Incoming {
    /// The header and records read so far (empty between packets).
    head: Vec<u8>,
    /// Data bytes of this packet not read yet (0: a head comes next).
    left: usize,
    /// The packet's handles, taken out of the sender once its records are
    /// in; they go to the caller with the first data bytes it reads.
    fds: Vec<OwnedFd>,
}

fn sending() -> &'static Mutex<HashMap<usize, Owed>> {
    static TABLE: OnceLock<Mutex<HashMap<usize, Owed>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

fn receiving() -> &'static Mutex<HashMap<usize, Arc<Mutex<Incoming>>>> {
    static TABLE: OnceLock<Mutex<HashMap<usize, Arc<Mutex<Incoming>>>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

fn state_of<T: Default>(table: &Mutex<HashMap<usize, Arc<Mutex<T>>>>, s: SOCKET) -> Arc<Mutex<T>> {
    table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(s)
        .or_default()
        .clone()
}

/// The process at the other end of a socket, where this process knows it:
/// its pid and a handle to it that may duplicate handles into it.
struct Peer {
    pid: u32,
    process: OwnedFd,
}

fn peers() -> &'static Mutex<HashMap<usize, Arc<Peer>>> {
    static PEERS: OnceLock<Mutex<HashMap<usize, Arc<Peer>>>> = OnceLock::new();
    PEERS.get_or_init(Default::default)
}

/// Records that process `pid` reads the other end of socket `s` (a child's
/// control socket, from either side). Handles sent on `s` are then put
/// straight into that process, so they arrive even if this process ends
/// right after sending (a child's result): taking them from the sender
/// would fail once it is gone.
pub(super) fn set_peer(s: SOCKET, pid: u32) -> io::Result<()> {
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_DUP_HANDLE};
    // SAFETY: a plain call; null is an error.
    let h = unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    let peer = Peer {
        pid,
        process: OwnedFd::from_handle(h),
    };
    peers()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(s, Arc::new(peer));
    Ok(())
}

/// Drops a closing socket's state (its value may be reused).
pub(super) fn forget(s: SOCKET) {
    sending()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&s);
    receiving()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&s);
    peers().lock().unwrap_or_else(|e| e.into_inner()).remove(&s);
}

/// Writes all of `bytes`, blocking as needed.
fn send_all(s: SOCKET, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match send_plain(s, &[IoSlice::new(bytes)], false)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => bytes = &bytes[n..],
        }
    }
    Ok(())
}

/// The header and the records of a packet of `len` data bytes carrying `fds`:
/// copies of the handles are made here, for the reader to take (in this
/// process, or already in the reader's when it is known).
fn head(s: SOCKET, len: usize, fds: &[RawFd]) -> io::Result<([u8; HEADER], Vec<u8>)> {
    let len = u32::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too large"))?;
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    // Nothing allocated for a packet without handles (most of them).
    let mut out = Vec::new();
    if !fds.is_empty() {
        out.reserve_exact(RECORD * fds.len());
    }
    let peer = if fds.is_empty() {
        None
    } else {
        peers()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&s)
            .cloned()
    };
    for &fd in fds {
        // Put into the reader; where that fails (under Wine, a process
        // that is still starting may refuse), left here for it to take.
        let pushed = peer
            .as_ref()
            .and_then(|p| Some((p.pid, duplicate_into(fd.value as _, &p.process).ok()?)));
        let (pid, copy) = match pushed {
            Some(done) => done,
            None => (
                super::getpid(),
                super::handle::duplicate_in_this_process(fd.value as _, false)?,
            ),
        };
        out.extend_from_slice(&pid.to_le_bytes());
        out.extend_from_slice(&fd.kind.code().to_le_bytes());
        out.extend_from_slice(&(copy as u64).to_le_bytes());
    }
    Ok((header, out))
}

/// A copy of handle `h` made in the process `into` names.
fn duplicate_into(
    h: windows_sys::Win32::Foundation::HANDLE,
    into: &OwnedFd,
) -> io::Result<windows_sys::Win32::Foundation::HANDLE> {
    use super::handle::AsRawFd;
    use windows_sys::Win32::Foundation::{DUPLICATE_SAME_ACCESS, DuplicateHandle};
    use windows_sys::Win32::System::Threading::GetCurrentProcess;
    let mut out = std::ptr::null_mut();
    // SAFETY: `h` is a handle of ours the caller keeps open, `into` a
    // process handle with PROCESS_DUP_HANDLE, `out` a valid out-pointer.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h,
            into.as_raw_fd().value as _,
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

/// `send_with_fds` on a framed socket.
pub(super) fn send(
    s: SOCKET,
    bufs: &[IoSlice<'_>],
    fds: &[RawFd],
    nonblocking: bool,
) -> io::Result<usize> {
    if fds.len() > super::MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message may carry at most {} handles, this one has {}",
                super::MAX_FDS_PER_MESSAGE,
                fds.len()
            ),
        ));
    }
    let owed = state_of(sending(), s);
    let mut left = owed.lock().unwrap_or_else(|e| e.into_inner());
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let fresh = *left == 0;
    if fresh {
        if total == 0 {
            return Ok(0);
        }
        if nonblocking {
            // Start a packet only when the socket takes something now, so
            // that a would-block leaves no copies of handles behind.
            let mut p = [super::net::PollFd::writable(s)];
            if super::net::poll(&mut p, Some(std::time::Duration::ZERO))? == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    } else if !fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "handles must start a write of their own",
        ));
    }
    let header = if fresh {
        Some(head(s, total, fds)?)
    } else {
        None
    };
    // The head, then only this packet's data (the caller resumes with what
    // follows), in one gathered send where the socket takes it all.
    let mut room = if fresh { total } else { *left };
    let mut slices = [IoSlice::new(&[]); super::net::MAX_BUFS];
    let mut count = 0;
    if let Some((header, records)) = &header {
        slices[0] = IoSlice::new(header);
        count = 1;
        if !records.is_empty() {
            slices[1] = IoSlice::new(records);
            count = 2;
        }
    }
    let first_data = count;
    for b in bufs.iter().take(super::net::MAX_BUFS - first_data) {
        if room == 0 {
            break;
        }
        let take = b.len().min(room);
        slices[count] = IoSlice::new(&b[..take]);
        count += 1;
        room -= take;
    }
    if let Some((header, records)) = &header {
        // Blocking: a head, once begun, goes whole.
        let n = send_plain(s, &slices[..count], false)?;
        *left = total;
        let head_len = HEADER + records.len();
        if n < HEADER {
            send_all(s, &header[n..])?;
            send_all(s, records)?;
        } else if n < head_len {
            send_all(s, &records[n - HEADER..])?;
        } else if n > head_len {
            *left -= n - head_len;
            return Ok(n - head_len);
        }
    }
    let mine = &slices[first_data..count];
    let n = loop {
        match send_plain(s, mine, nonblocking) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && fresh => {
                // The head (and its handles) went in this call: report at
                // least one data byte written, or the caller would send
                // the handles again.
                wait_for(s, POLLWRNORM)?;
            }
            other => break other?,
        }
    };
    *left -= n;
    Ok(n)
}

/// `recv_with_fds` on a framed socket. Resumable, as a Unix stream is: a
/// non-blocking call that finds nothing more reports would-block wherever
/// it is in a packet (its head, its data), and the next call goes on from
/// there. So a reader that must not block never waits for a sender that
/// stopped half-way (under Wine, a killed process's end of a socket can
/// stay open for a while, so no end-of-file comes either).
pub(super) fn recv(
    s: SOCKET,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    let state = state_of(receiving(), s);
    let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
    let st = &mut *guard;
    while st.left == 0 {
        let need = match st.head.get(4..HEADER) {
            Some(count) => HEADER + RECORD * u32::from_le_bytes(count.try_into().unwrap()) as usize,
            None => HEADER,
        };
        let have = st.head.len();
        if have < need {
            st.head.resize(need, 0);
            let n = match recv_plain(s, &mut st.head[have..need], nonblocking) {
                Ok(n) => n,
                Err(e) => {
                    st.head.truncate(have);
                    return Err(e);
                }
            };
            st.head.truncate(have + n);
            if n == 0 {
                if have == 0 {
                    return Ok(0);
                }
                return Err(mid_packet_eof());
            }
            if have + n == HEADER {
                check_header(&st.head)?;
            }
            continue;
        }
        // The head is whole: take the handles, then the data follows. (The
        // buffer is kept for the next head: no allocation per packet.)
        st.left = u32::from_le_bytes(st.head[..4].try_into().unwrap()) as usize;
        let mut failed = None;
        for r in st.head[HEADER..].chunks_exact(RECORD) {
            let pid = u32::from_le_bytes(r[..4].try_into().unwrap());
            let kind = u32::from_le_bytes(r[4..8].try_into().unwrap());
            let value = u64::from_le_bytes(r[8..].try_into().unwrap());
            let imported = Kind::from_code(kind)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown handle kind"))
                .and_then(|kind| super::import_handle((pid, value, kind)));
            match imported {
                Ok(fd) => st.fds.push(fd),
                Err(e) => failed = Some(e),
            }
        }
        st.head.clear();
        if let Some(e) = failed {
            // As a cut-off SCM_RIGHTS message: the bytes are unusable.
            st.fds.clear();
            return Err(e);
        }
    }
    let want = buf.len().min(st.left);
    match recv_plain(s, &mut buf[..want], nonblocking)? {
        0 => Err(mid_packet_eof()),
        n => {
            st.left -= n;
            fds.append(&mut st.fds);
            Ok(n)
        }
    }
}

fn mid_packet_eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the peer closed in the middle of a packet",
    )
}

/// Refuses a header no mproc process wrote.
fn check_header(header: &[u8]) -> io::Result<()> {
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(header[4..HEADER].try_into().unwrap()) as usize;
    if count > super::MAX_FDS_PER_MESSAGE || len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a packet header that no mproc process wrote ({len} bytes, {count} handles)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::time::Duration;

    use super::super::handle::{AsFd, AsRawFd};
    use super::super::net::{recv_with_fds, send_plain, send_with_fds, socketpair};
    use super::*;

    /// A copy made by `try_clone` waits for data like the original: under
    /// Wine a `DuplicateHandle` copy of a socket was refused by `WSAPoll`
    /// (`WSAENOTSOCK`), so a blocking read that found nothing yet failed.
    #[test]
    fn a_cloned_socket_blocks_until_data_comes() {
        let (a, b) = socketpair().unwrap();
        let b2 = b.try_clone().unwrap();
        drop(b);
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            send_with_fds(a.as_fd(), &[IoSlice::new(b"late")], &[], false).unwrap();
            a
        });
        let mut buf = [0u8; 8];
        let mut fds = Vec::new();
        let n = recv_with_fds(b2.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!(&buf[..n], b"late");
        assert!(fds.is_empty());
        drop(writer.join().unwrap());
    }

    /// A non-blocking read in the middle of a packet whose sender stopped
    /// reports would-block, keeps its place, and goes on once the rest
    /// comes; the packet's handles come with its first data bytes.
    #[test]
    fn a_non_blocking_read_resumes_a_packet_that_stopped_half_way() {
        let (a, b) = socketpair().unwrap();
        let (extra, _keep) = socketpair().unwrap();
        let s = a.as_raw_fd().value;
        // A packet of 5 data bytes carrying one handle, written by hand in
        // three parts: half the head, the rest of it, then the data.
        let (header, records) = head(s, 5, &[extra.as_raw_fd()]).unwrap();
        let head = [&header[..], &records[..]].concat();
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let r = b.as_raw_fd().value;
        let would_block = |fds: &mut Vec<OwnedFd>, buf: &mut [u8]| {
            let e = recv(r, buf, fds, true).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        };
        would_block(&mut fds, &mut buf);
        send_plain(s, &[IoSlice::new(&head[..5])], false).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        would_block(&mut fds, &mut buf);
        send_plain(s, &[IoSlice::new(&head[5..])], false).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        would_block(&mut fds, &mut buf);
        assert!(fds.is_empty(), "handles wait for the first data byte");
        send_plain(s, &[IoSlice::new(b"hello")], false).unwrap();
        let n = recv(r, &mut buf, &mut fds, false).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        // The stream is in step: the next packet reads whole.
        send_with_fds(a.as_fd(), &[IoSlice::new(b"next")], &[], false).unwrap();
        let n = recv(r, &mut buf, &mut fds, false).unwrap();
        assert_eq!(&buf[..n], b"next");
        assert_eq!(fds.len(), 1);
    }
}
