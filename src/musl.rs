//! Two C library functions replaced, in the static musl build only, by
//! smaller ones that do all this program asks of them; a size measure
//! (20.3 KiB of the 450 KiB budget on amd64), not a behaviour. The linker takes a
//! symbol we define before it looks in libc.a, so musl's and zig's versions,
//! and what only they pull in, are left out of the binary.
//!
//! This module must not be built for glibc, or for anything dynamically
//! linked: there the definitions would replace the system's for every
//! library in the process. The sort itself (`heap_sort`) is plain code,
//! built and tested everywhere.

use std::ffi::c_int;

/// The comparison function `qsort` is given.
#[cfg(all(target_env = "musl", target_os = "linux"))]
type Compare = unsafe extern "C" fn(*const std::ffi::c_void, *const std::ffi::c_void) -> c_int;

/// `qsort(3)`. Its one caller here is musl's name lookup (`getaddrinfo`,
/// for a check's host name; `dns://` asks its own server), which orders at most 48 addresses
/// by RFC 6724's rules; zig's libc gives a pattern-defeating quicksort of
/// 9 KiB for it. A heap sort is a few hundred bytes, O(n log n) in every
/// case, and in place (no allocation, which `getaddrinfo` never does
/// either). Not stable, as `qsort` need not be: musl's keys end with each
/// address's place, so its order is total.
///
/// # Safety
///
/// As `qsort(3)`: `base` holds `count` elements of `width` bytes each, and
/// `compare` orders two of them without writing to them.
#[cfg(all(target_env = "musl", target_os = "linux"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qsort(
    base: *mut std::ffi::c_void,
    count: usize,
    width: usize,
    compare: Compare,
) {
    // SAFETY: the caller's promise, as qsort(3) states it; compare is only
    // given pointers to elements within base.
    unsafe {
        heap_sort(base.cast(), count, width, |a, b| {
            compare(a.cast(), b.cast())
        })
    }
}

/// Sorts `count` elements of `width` bytes at `base` so that `compare`
/// never finds one greater than the next.
///
/// # Safety
///
/// `base` is valid for reads and writes of `count * width` bytes; `compare`
/// is sound for any two pointers to elements within it.
pub unsafe fn heap_sort(
    base: *mut u8,
    count: usize,
    width: usize,
    compare: impl Fn(*const u8, *const u8) -> c_int,
) {
    if width == 0 || count < 2 {
        return;
    }
    // SAFETY (the three closures): i, j < count, so each pointer is an
    // element within base, and two distinct elements never overlap.
    let at = |i: usize| unsafe { base.add(i * width) };
    let less = |i: usize, j: usize| compare(at(i), at(j)) < 0;
    let swap = |i: usize, j: usize| unsafe { std::ptr::swap_nonoverlapping(at(i), at(j), width) };
    // Moves element `root` down the heap held in [0, end) until no child is
    // greater than it.
    let sift_down = |mut root: usize, end: usize| {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && less(child, child + 1) {
                child += 1;
            }
            if !less(root, child) {
                return;
            }
            swap(root, child);
            root = child;
        }
    };
    for root in (0..count / 2).rev() {
        sift_down(root, count);
    }
    for end in (1..count).rev() {
        swap(0, end);
        sift_down(0, end);
    }
}

/// `pthread_setname_np(3)`. std calls it from each thread it spawns with a
/// name (`http-0`, a probe's name, `lookup`), for that thread itself, with
/// the name already cut to 15 bytes. musl's version also names another
/// thread, writing `/proc/self/task/TID/comm`, a path it formats with
/// `snprintf`: that alone brings printf and its float formatting, 8.5 KiB.
/// Here the calling thread is named as musl names it (`prctl(PR_SET_NAME)`),
/// and another thread is refused with `ENOTSUP` (nothing here asks that).
///
/// # Safety
///
/// As `pthread_setname_np(3)`: `name` is a NUL-terminated string.
#[cfg(all(target_env = "musl", target_os = "linux"))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_setname_np(
    thread: libc::pthread_t,
    name: *const std::ffi::c_char,
) -> c_int {
    // SAFETY: the caller gives a NUL-terminated string, as the function's
    // contract requires.
    if unsafe { libc::strnlen(name, 16) } > 15 {
        return libc::ERANGE;
    }
    // SAFETY: pthread_self and pthread_equal take no pointers.
    if unsafe { libc::pthread_equal(thread, libc::pthread_self()) } == 0 {
        return libc::ENOTSUP;
    }
    // SAFETY: PR_SET_NAME reads at most 16 bytes of a NUL-terminated
    // string, which name is; the unused arguments are zero, as prctl(2)
    // asks.
    if unsafe { libc::prctl(libc::PR_SET_NAME, name, 0, 0, 0) } != 0 {
        return std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL);
    }
    0
}

/// The replacements themselves, where they are linked in: `make test` runs
/// these for this machine's musl target (`cargo test --target ...-musl`).
#[cfg(all(test, target_env = "musl", target_os = "linux"))]
mod linked {
    use std::ffi::{c_int, c_void};

    #[test]
    fn std_names_its_threads_through_ours() {
        let name = std::thread::Builder::new()
            .name("a-probe-name-longer-than-15".into())
            .spawn(|| std::fs::read_to_string("/proc/thread-self/comm").unwrap())
            .unwrap()
            .join()
            .unwrap();
        // std cuts the name to 15 bytes; the kernel took it from prctl.
        assert_eq!(name, "a-probe-name-lo\n");
    }

    #[test]
    fn refuses_long_names_and_other_threads() {
        // SAFETY: pthread_self takes nothing and cannot fail.
        let this = unsafe { libc::pthread_self() };
        // SAFETY: the name is NUL-terminated and this thread is live.
        let long = unsafe { libc::pthread_setname_np(this, c"sixteen-bytes-xx".as_ptr()) };
        assert_eq!(long, libc::ERANGE);
        let this = this as usize;
        // SAFETY: the name is NUL-terminated; this thread outlives the
        // one that names it, as it waits for it (join).
        let from_other = std::thread::spawn(move || unsafe {
            libc::pthread_setname_np(this as libc::pthread_t, c"other".as_ptr())
        })
        .join()
        .unwrap();
        // musl's own would have named this thread (0): ENOTSUP shows that
        // the libc name links to ours.
        assert_eq!(from_other, libc::ENOTSUP);
    }

    #[test]
    fn qsort_sorts_for_a_c_caller() {
        unsafe extern "C" fn by_value(a: *const c_void, b: *const c_void) -> c_int {
            // SAFETY: qsort gives pointers to elements of the i32 array.
            let (a, b) = unsafe { (*a.cast::<i32>(), *b.cast::<i32>()) };
            a.cmp(&b) as c_int
        }
        let mut items = [5, -3, 9, 0, 5, 2, -7, 1];
        // SAFETY: items holds 8 elements of 4 bytes; by_value reads them as
        // i32, which they are. Called through libc's name, as C would.
        unsafe {
            libc::qsort(
                items.as_mut_ptr().cast(),
                items.len(),
                std::mem::size_of::<i32>(),
                Some(by_value),
            )
        };
        assert_eq!(items, [-7, -3, 0, 1, 2, 5, 5, 9]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sorts `items` with heap_sort, as qsort would with this comparison.
    fn sorted<T: Ord + Copy>(mut items: Vec<T>) -> Vec<T> {
        let width = std::mem::size_of::<T>();
        // SAFETY: items holds len elements of width bytes; the comparison
        // reads two of them as T, which they are.
        unsafe {
            heap_sort(items.as_mut_ptr().cast(), items.len(), width, |a, b| {
                let (a, b) = (*a.cast::<T>(), *b.cast::<T>());
                a.cmp(&b) as c_int
            })
        };
        items
    }

    #[test]
    fn sorts_as_std_sorts() {
        // Every length up to 60 (musl sorts at most 48), each in several
        // orders, with repeats; and a long one.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in 0..=60usize {
            for kind in 0..4 {
                let items: Vec<u64> = (0..len as u64)
                    .map(|i| match kind {
                        0 => i,
                        1 => len as u64 - i,
                        2 => next() % 5,
                        _ => next(),
                    })
                    .collect();
                let mut want = items.clone();
                want.sort();
                assert_eq!(sorted(items), want, "length {len}, kind {kind}");
            }
        }
        let long: Vec<u64> = (0..5000).map(|_| next()).collect();
        let mut want = long.clone();
        want.sort();
        assert_eq!(sorted(long), want);
    }

    #[test]
    fn sorts_wide_elements_by_their_key() {
        // musl's address records are 28-byte structs; here 3-byte ones, to
        // show the width is honoured (a key byte and two bytes kept with it).
        let items: Vec<[u8; 3]> = (0..40u8)
            .map(|i| [(i as u16 * 7 % 40) as u8, i, !i])
            .collect();
        let mut want = items.clone();
        want.sort();
        assert_eq!(sorted(items), want);
    }
}
