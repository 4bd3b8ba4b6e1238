//! How glibc's allocator treats the memory of images a run is done with:
//! kept for the next image rather than given back to the kernel and taken
//! again, zeroed, page by page. Elsewhere than glibc these do nothing.

/// Let the allocator keep the memory of images the process is done with,
/// for the next ones: blocks of up to 32 MiB come from the heap, and up to
/// 64 MiB of it stays once free. Called before the run starts its threads:
/// by `run` without `--memory`, and first thing in every worker process.
///
/// glibc's own rule reaches about the same state, but only after it has
/// freed its first large block, and then only for blocks up to that one's
/// size: until then, and for every larger photo, each image's buffers were
/// mapped afresh and zeroed page by page. On the corpus, 1600 px +
/// sharpen, `--jobs 2` (BENCHMARKS.md, issue 17): a third fewer page faults
/// and about 5% less wall time, for 5-10% more peak memory. Not with
/// `--memory`: there, with one arena, it raised the peak of eight 27 MB
/// images under a 60 MiB budget from 40 MB to 64 MB. In worker
/// processes, which handle one image at a time, glibc's rule gave much of
/// every image's memory back: a third more page faults than threads mode on
/// the gallery. On 32-bit glibc the 32 MiB threshold is refused and glibc
/// keeps its own rule.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters; called before
    // the run's threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Make freed buffers reusable by every thread, so peak memory follows the
/// budget. glibc otherwise gives each thread that allocates concurrently an
/// arena of its own, and a photo freed in one arena is not reused by a
/// thread allocating in another: peak memory then grows with the number of
/// threads that ever held a photo, whatever the budget. One arena for the
/// process fixes that; small allocations stay fast in glibc's per-thread
/// caches. Measured (8 photos of 9 MP, one at a time over 4 threads, 60 MiB
/// budget): 127 MB peak with glibc's defaults, 37 MB with one arena. The
/// earlier fix, mapping every buffer over 4 MiB for itself, also kept the
/// peak down (43 MB) but paid a page fault per page of every new buffer:
/// 0.7-0.8 s of system time instead of 0.3 s on 38 wallpapers. Applied only
/// when `--memory` is given.
pub fn share_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before the
    // run starts its threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
