//! Shared memory and sleeping on a shared word, on Windows.
//!
//! A segment is an unnamed pagefile-backed section (`CreateFileMappingW`
//! with no file and no name): it lives as long as some handle or view
//! refers to it, in any process, and leaves no name behind.
//!
//! Windows cannot wake a thread of another process through an address
//! (`WaitOnAddress` is per process), so each segment carries one more page
//! at its end, the *parking page*: the segment's random id and the user's
//! length, then 64 sleeper counts. A word at byte `o` of the segment parks
//! on slot `o / 4 % 64`, whose kernel semaphore is named after the id and
//! the slot (`Local\mproc-<id>-<slot>`); a name lives only while a handle
//! to it is open. A sleeper counts itself in, looks at the word once more,
//! and waits on the semaphore; a waker that sees sleepers releases as many
//! permits as there are. Words of a slot share its semaphore, so a wake may
//! reach a sleeper of another word, which looks again and sleeps on
//! (spurious wakes are allowed: `word_wait` returning `true` means "look
//! again"), and a wake-one releases every sleeper of the slot so that the
//! one that matters is among them.
//!
//! A word outside every segment (a process-local one) sleeps with
//! `WaitOnAddress`.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE, WAIT_TIMEOUT};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_ALL_ACCESS, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS,
    MapViewOfFile, PAGE_READWRITE, UnmapViewOfFile, VirtualQuery,
};
use windows_sys::Win32::System::SystemInformation::{GetSystemInfo, SYSTEM_INFO};
use windows_sys::Win32::System::Threading::{
    CreateSemaphoreW, INFINITE, ReleaseSemaphore, WaitForSingleObject, WaitOnAddress,
    WakeByAddressAll, WakeByAddressSingle,
};

use super::handle::{AsRawFd, BorrowedFd, OwnedFd};

/// An absolute point in time for waits (the monotonic clock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// `timeout` from now, or `None` when that cannot be represented.
    pub(crate) fn after(timeout: Duration) -> Option<Deadline> {
        Instant::now().checked_add(timeout).map(Deadline)
    }

    /// The time left, zero once the deadline has passed.
    pub(crate) fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub(crate) fn has_passed(&self) -> bool {
        self.remaining().is_zero()
    }

    fn millis(&self) -> u32 {
        self.remaining()
            .as_nanos()
            .div_ceil(1_000_000)
            .min(u128::from(INFINITE - 1)) as u32
    }
}

/// The page size.
pub(crate) fn page_size() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        // SAFETY: an all-zero SYSTEM_INFO is a valid out-buffer.
        let mut info: SYSTEM_INFO = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer.
        unsafe { GetSystemInfo(&mut info) };
        info.dwPageSize as usize
    })
}

const SLOTS: usize = 64;
const PARK_MAGIC: u32 = 0x6b72_6170; // "park"

/// The parking page's layout.
#[repr(C)]
struct Park {
    magic: AtomicU32,
    _pad: u32,
    len: AtomicU64,
    id: [AtomicU64; 2],
    sleepers: [AtomicU32; SLOTS],
}

fn park_offset(len: usize) -> usize {
    len.div_ceil(page_size()).max(1) * page_size()
}

/// A new shared segment of `len` zero bytes (plus its parking page).
pub(crate) fn shared_memory(_name: &CStr, len: usize) -> io::Result<OwnedFd> {
    let total = park_offset(len)
        .checked_add(page_size())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "shared memory too large"))?;
    // SAFETY: no file, no name, default security; a null result is an error.
    let h = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            (total as u64 >> 32) as u32,
            total as u32,
            std::ptr::null(),
        )
    };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    let fd = OwnedFd::from_handle(h);
    let view = View::map(h, 0)?;
    let mut id = [0u8; 16];
    super::fill_random(&mut id);
    let park = view.park(total - page_size());
    park.len.store(len as u64, Ordering::Relaxed);
    park.id[0].store(
        u64::from_le_bytes(id[..8].try_into().unwrap()),
        Ordering::Relaxed,
    );
    park.id[1].store(
        u64::from_le_bytes(id[8..].try_into().unwrap()),
        Ordering::Relaxed,
    );
    park.magic.store(PARK_MAGIC, Ordering::Release);
    Ok(fd)
}

/// The length the segment behind `fd` was created with.
pub(crate) fn memory_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let view = View::map(fd.as_raw_fd().value as HANDLE, 0)?;
    let park = view.park(view.len - page_size());
    if park.magic.load(Ordering::Acquire) != PARK_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an mproc shared-memory segment",
        ));
    }
    usize::try_from(park.len.load(Ordering::Relaxed))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "segment too large"))
}

/// A whole view of a section, unmapped on drop.
#[derive(Debug)]
pub(super) struct View {
    pub(super) ptr: NonNull<u8>,
    /// The view's size: whole pages.
    pub(super) len: usize,
}

impl View {
    /// Maps all of section `h` (`len` 0) or its first `len` bytes.
    pub(super) fn map(h: HANDLE, len: usize) -> io::Result<View> {
        // SAFETY: `h` is a section handle the caller holds open.
        let addr = unsafe { MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, len) };
        let Some(ptr) = NonNull::new(addr.Value.cast::<u8>()) else {
            return Err(io::Error::last_os_error());
        };
        // SAFETY: an all-zero MEMORY_BASIC_INFORMATION is a valid buffer.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-buffer of the size passed.
        let n = unsafe {
            VirtualQuery(
                ptr.as_ptr().cast(),
                &mut info,
                std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        let view = View {
            ptr,
            len: info.RegionSize,
        };
        if n == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(view)
    }

    fn park(&self, offset: usize) -> &Park {
        assert!(offset + std::mem::size_of::<Park>() <= self.len);
        // SAFETY: in bounds (checked), page-aligned, and every field is an
        // atomic, valid for any bytes; the reference borrows the view.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<Park>() }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: the view was mapped by MapViewOfFile and is unmapped once.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.as_ptr().cast(),
            })
        };
    }
}

/// A shared read-write view of a whole segment, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Where the parking page starts.
    park: usize,
}

// SAFETY: the mapping is plain shared memory; its users synchronize through
// atomics and locks stored in it.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the segment `fd` (whose user length is `len`).
    pub(crate) fn shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        let view = View::map(fd.as_raw_fd().value as HANDLE, 0)?;
        // The parking page is the section's last page.
        let park = view.len - page_size();
        let p = view.park(park);
        if p.magic.load(Ordering::Acquire) != PARK_MAGIC
            || p.len.load(Ordering::Relaxed) < len as u64
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an mproc segment, or smaller than the length asked for",
            ));
        }
        let m = Mapping {
            ptr: view.ptr,
            len,
            park,
        };
        std::mem::forget(view);
        registry()
            .lock()
            .unwrap()
            .insert(m.ptr.as_ptr() as usize, m.entry());
        Ok(m)
    }

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The user length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn entry(&self) -> Entry {
        let base = self.ptr.as_ptr() as usize;
        // SAFETY: the parking page lies inside the view (checked in
        // `shared`), page-aligned, all atomics.
        let park = unsafe { &*self.ptr.as_ptr().add(self.park).cast::<Park>() };
        Entry {
            end: base + self.len,
            park: base + self.park,
            id: [
                park.id[0].load(Ordering::Relaxed),
                park.id[1].load(Ordering::Relaxed),
            ],
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let base = self.ptr.as_ptr() as usize;
        let id = self.entry().id;
        let mut reg = registry().lock().unwrap();
        reg.remove(&base);
        if !reg.values().any(|e| e.id == id) {
            drop(reg);
            semaphores().lock().unwrap().retain(|&(i, _), _| i != id);
        }
        // SAFETY: mapped by MapViewOfFile in `shared`, unmapped once.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.as_ptr().cast(),
            })
        };
    }
}

/// A live mapping, as the word waits need it.
#[derive(Clone, Copy)]
struct Entry {
    end: usize,
    park: usize,
    id: [u64; 2],
}

fn registry() -> &'static Mutex<std::collections::BTreeMap<usize, Entry>> {
    static REG: OnceLock<Mutex<std::collections::BTreeMap<usize, Entry>>> = OnceLock::new();
    REG.get_or_init(Default::default)
}

/// A slot's semaphore, closed when the last mapping of its segment in
/// this process goes.
struct Semaphore(HANDLE);

// SAFETY: a kernel handle, usable from any thread.
unsafe impl Send for Semaphore {}

impl Drop for Semaphore {
    fn drop(&mut self) {
        drop(OwnedFd::from_handle(self.0));
    }
}

type SemMap = HashMap<([u64; 2], usize), Semaphore>;

fn semaphores() -> &'static Mutex<SemMap> {
    static SEMS: OnceLock<Mutex<SemMap>> = OnceLock::new();
    SEMS.get_or_init(Default::default)
}

/// Where a word of a mapped segment parks.
struct Slot {
    sleepers: &'static AtomicU32,
    id: [u64; 2],
    index: usize,
}

/// The parking slot of `word`, if it lies in a mapped segment.
fn slot_of(word: &AtomicU32) -> Option<Slot> {
    let addr = word as *const AtomicU32 as usize;
    let (base, e) = {
        let reg = registry().lock().unwrap();
        let (&base, &e) = reg.range(..=addr).next_back()?;
        (base, e)
    };
    if addr >= e.end {
        return None;
    }
    let index = (addr - base) / 4 % SLOTS;
    // SAFETY: the entry's mapping is alive while the caller borrows a word
    // inside it (the word's reference keeps it mapped), and the parking page
    // is part of it; the 'static is only as long as the caller's wait.
    let park = unsafe { &*(e.park as *const Park) };
    Some(Slot {
        sleepers: &park.sleepers[index],
        id: e.id,
        index,
    })
}

impl Slot {
    /// The slot's semaphore, opened (or created) on first use in this
    /// process.
    fn semaphore(&self) -> Option<HANDLE> {
        let mut sems = semaphores().lock().unwrap();
        if let Some(s) = sems.get(&(self.id, self.index)) {
            return Some(s.0);
        }
        let name: Vec<u16> = format!(
            "Local\\mproc-{:016x}{:016x}-{}",
            self.id[0], self.id[1], self.index
        )
        .encode_utf16()
        .chain(Some(0))
        .collect();
        // SAFETY: creates or opens the named semaphore; null is an error.
        let h = unsafe { CreateSemaphoreW(std::ptr::null(), 0, i32::MAX, name.as_ptr()) };
        if h.is_null() {
            return None;
        }
        sems.insert((self.id, self.index), Semaphore(h));
        Some(h)
    }
}

/// Sleeps while `*word == expected`, until woken or `deadline` passes.
/// `false` only when the deadline passed; `true` means "look again".
pub(crate) fn word_wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> bool {
    let ms = deadline.map_or(INFINITE, Deadline::millis);
    let Some(slot) = slot_of(word) else {
        // SAFETY: both pointers name live u32s of the size passed.
        let woke = unsafe {
            WaitOnAddress(
                (word as *const AtomicU32).cast(),
                (&expected as *const u32).cast(),
                4,
                ms,
            )
        };
        return woke != 0 || deadline.is_none_or(|d| !d.has_passed());
    };
    slot.sleepers.fetch_add(1, Ordering::SeqCst);
    let r = match slot.semaphore() {
        _ if word.load(Ordering::SeqCst) != expected => None,
        // SAFETY: a live semaphore handle of this process.
        Some(sem) => Some(unsafe { WaitForSingleObject(sem, ms) }),
        // No semaphore (the system refused one): look again shortly.
        None => {
            std::thread::sleep(Duration::from_millis(1).min(Duration::from_millis(u64::from(ms))));
            None
        }
    };
    slot.sleepers.fetch_sub(1, Ordering::SeqCst);
    r != Some(WAIT_TIMEOUT) || deadline.is_none_or(|d| !d.has_passed())
}

/// Wakes sleepers on `word` (every sleeper of its slot, for a shared word).
/// A wake with nobody asleep touches only the slot's count.
pub(crate) fn word_wake(word: &AtomicU32, n: u32) {
    let Some(slot) = slot_of(word) else {
        let p = (word as *const AtomicU32).cast();
        // SAFETY: `p` names a live u32.
        unsafe {
            if n == 1 {
                WakeByAddressSingle(p);
            } else {
                WakeByAddressAll(p);
            }
        }
        return;
    };
    let k = slot.sleepers.load(Ordering::SeqCst);
    if k > 0
        && let Some(sem) = slot.semaphore()
    {
        // SAFETY: a live semaphore handle of this process.
        unsafe { ReleaseSemaphore(sem, k.min(i32::MAX as u32) as i32, std::ptr::null_mut()) };
    }
}

/// Copies `len` bytes from `src` to `dst`.
///
/// # Safety
/// As for [`std::ptr::copy_nonoverlapping`].
pub(crate) unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's guarantee.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
}
