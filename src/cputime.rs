//! CPU time spent on an item in a stage, as opposed to the wall time it
//! took: the thread's own CPU clock, plus what the stage's helpers used on
//! its behalf (child commands of `exec`, pool threads of a split image).
//! The gap between the two says how much a stage waits (on a command, on
//! I/O) rather than computes.

use std::cell::Cell;
use std::time::Duration;

/// This thread's CPU time so far (user and system).
pub fn thread_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

thread_local! {
    /// CPU time used for this thread's current stage call elsewhere.
    static ELSEWHERE: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Count CPU time that a child process or other threads spent on the work
/// this thread is doing.
pub fn add_elsewhere(d: Duration) {
    ELSEWHERE.with(|c| c.set(c.get() + d));
}

/// The time counted by [`add_elsewhere`] since the last call, reset to zero.
pub fn take_elsewhere() -> Duration {
    ELSEWHERE.with(|c| c.replace(Duration::ZERO))
}

/// Measures the CPU time of one stage call on this thread.
pub struct Meter(Duration);

impl Meter {
    pub fn start() -> Meter {
        take_elsewhere();
        Meter(thread_now())
    }

    /// CPU time since `start`, here and elsewhere.
    pub fn stop(self) -> Duration {
        thread_now().saturating_sub(self.0) + take_elsewhere()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's CPU time by another clock, the kernel's accounting.
    fn rusage_thread() -> Duration {
        // SAFETY: an all-zero rusage is valid, and getrusage fills ours.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: see above.
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
        let t = |v: libc::timeval| {
            Duration::from_secs(v.tv_sec as u64) + Duration::from_micros(v.tv_usec as u64)
        };
        t(u.ru_utime) + t(u.ru_stime)
    }

    #[test]
    fn a_busy_loop_counts_and_a_sleep_does_not() {
        // Spin until the kernel has counted 50 ms of this thread's CPU
        // (however busy the machine is); the meter must agree.
        let m = Meter::start();
        let from = rusage_thread();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        while rusage_thread() - from < Duration::from_millis(50)
            && std::time::Instant::now() < deadline
        {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let busy = m.stop();
        let counted = rusage_thread() - from;
        assert!(
            counted >= Duration::from_millis(50),
            "the machine starved us"
        );
        let diff = busy.abs_diff(counted);
        assert!(
            diff < Duration::from_millis(15),
            "{busy:?} against {counted:?}"
        );
        let m = Meter::start();
        std::thread::sleep(Duration::from_millis(60));
        let slept = m.stop();
        assert!(slept < Duration::from_millis(20), "{slept:?}");
        let m = Meter::start();
        add_elsewhere(Duration::from_millis(500));
        assert!(m.stop() >= Duration::from_millis(500));
        assert_eq!(take_elsewhere(), Duration::ZERO);
    }
}
