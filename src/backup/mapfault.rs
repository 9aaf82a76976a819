//! A page of a mapped archive that cannot be read becomes an error, not a crash.
//!
//! Owns the SIGBUS handler and the registry of mapped windows ([`guard`]). Invariants: a
//! SIGBUS inside a registered window maps a page of zeros over the faulting page and raises
//! that window's flag, so the stream reports the archive unreadable; any other SIGBUS goes to
//! the handler that was there before, or to the default action.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Windows that can be registered at once (a stream maps a few; a process reads a few
/// archives at a time at most). A window that finds no free slot is mapped unguarded.
const SLOTS: usize = 256;

/// One registered range: `[start, end)` and the flag raised when a page in it faults.
/// `start == 0` is a free slot.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    flag: AtomicPtr<AtomicBool>,
}

static SLOTS_IN_USE: [Slot; SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        flag: AtomicPtr::new(std::ptr::null_mut()),
    }
}; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();
/// The SIGBUS action before ours, written once before ours is installed.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());

/// A registered window; unregisters when dropped (before the window is unmapped).
pub struct Guard {
    slot: Option<usize>,
}

/// Registers `[start, start + len)`; a SIGBUS there raises `flag`, which must outlive the
/// guard (the window holds both).
pub fn guard(start: *const u8, len: usize, flag: &AtomicBool) -> Guard {
    INSTALL.call_once(install);
    let start = start as usize;
    for (i, slot) in SLOTS_IN_USE.iter().enumerate() {
        // Claimed by swapping the start in; `end` and `flag` are set before `start` is
        // visible to the handler as a whole range (the handler checks `end > start`).
        if slot
            .start
            .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            slot.flag
                .store(flag as *const AtomicBool as *mut AtomicBool, Ordering::Release);
            slot.end.store(start + len, Ordering::Release);
            slot.start.store(start, Ordering::Release);
            return Guard { slot: Some(i) };
        }
    }
    Guard { slot: None }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let slot = &SLOTS_IN_USE[i];
            slot.start.store(usize::MAX, Ordering::Release);
            slot.end.store(0, Ordering::Release);
            slot.flag.store(std::ptr::null_mut(), Ordering::Release);
            slot.start.store(0, Ordering::Release);
        }
    }
}

fn install() {
    // SAFETY: sysconf has no preconditions; sigaction is given valid structs, and the
    // previous action is stored (leaked, it lives as long as the process) before ours can run.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE);
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        let mut previous: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous);
        PREVIOUS.store(Box::into_raw(Box::new(previous)), Ordering::Release);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler. Only atomics and
    // the mmap and sigaction system calls are used here, which are safe in a handler.
    unsafe {
        let addr = (*info).si_addr() as usize;
        for slot in &SLOTS_IN_USE {
            let start = slot.start.load(Ordering::Acquire);
            let end = slot.end.load(Ordering::Acquire);
            if start != 0 && start != usize::MAX && end > start && (start..end).contains(&addr) {
                let flag = slot.flag.load(Ordering::Acquire);
                // Still the same registration (not freed and taken again between the loads).
                if slot.start.load(Ordering::Acquire) != start {
                    continue;
                }
                let page = addr & !(PAGE.load(Ordering::Relaxed) - 1);
                let zeros = libc::mmap(
                    page as *mut libc::c_void,
                    PAGE.load(Ordering::Relaxed),
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                );
                if zeros != libc::MAP_FAILED && !flag.is_null() {
                    (*flag).store(true, Ordering::Release);
                    return;
                }
                break;
            }
        }
        // Not a window's: whatever would have happened without this module.
        let previous = PREVIOUS.load(Ordering::Acquire);
        if previous.is_null() {
            return;
        }
        let handler = (*previous).sa_sigaction;
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
            // Back to the default; returning re-runs the access, which now kills the
            // process with SIGBUS as it would have.
            libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut());
        } else if (*previous).sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = std::mem::transmute(handler);
            f(sig, info, context);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            f(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_page_cut_from_under_a_guarded_map_reads_as_zeros_and_raises_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let page = PAGE.load(Ordering::Relaxed).max(4096);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&vec![7u8; 4 * page])
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a fresh read-only mapping of an open file, unmapped below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4 * page,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        let flag = AtomicBool::new(false);
        let g = guard(ptr as *const u8, 4 * page, &flag);
        // SAFETY: within the mapping.
        let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, 4 * page) };
        assert_eq!(bytes[0], 7);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(page as u64)
            .unwrap();
        // Past the new end: a SIGBUS without the guard.
        // SAFETY: within the mapping (the guard turns the lost page into zeros).
        let past = unsafe { std::ptr::read_volatile(&bytes[2 * page + 10]) };
        assert_eq!(past, 0);
        assert!(flag.load(Ordering::Acquire), "the fault is known");
        assert_eq!(bytes[10], 7, "the pages still in the file are untouched");
        drop(g);
        // SAFETY: the mapping made above, once.
        unsafe { libc::munmap(ptr, 4 * page) };
    }
}
