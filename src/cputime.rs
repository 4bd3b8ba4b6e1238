//! CPU time spent on an item in a stage, as opposed to the wall time it
//! took: the thread's own CPU clock, plus what the stage's helpers used on
//! its behalf (child commands of `exec`, pool threads of a split image).
//! The gap between the two says how much a stage waits (on a command, on
//! I/O) rather than computes. Also what a child process used, read when it
//! is reaped.

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

/// What a child process used, as `wait4` reports it.
/// The largest resident size this process has had so far, in bytes.
pub fn peak_rss_self() -> u64 {
    // SAFETY: an all-zero rusage is valid, and getrusage fills ours.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes only into the local it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    if rc != 0 {
        return 0;
    }
    // Linux gives kilobytes.
    u64::try_from(u.ru_maxrss).unwrap_or(0) * 1024
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Used {
    /// CPU time, user and system.
    pub cpu: Duration,
    /// The largest resident size of the child or of any process it waited
    /// for (its own workers), in bytes.
    pub max_rss: u64,
}

/// The child's exit status and what it used, once it has exited; `None`
/// while it runs. Reaped here with `wait4`, which reports what `try_wait`
/// does not, so `child` must not be waited for again after `Some`.
pub fn reap(
    child: &mut std::process::Child,
) -> std::io::Result<Option<(std::process::ExitStatus, Used)>> {
    use std::os::unix::process::ExitStatusExt;
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, writing into locals we own.
    let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    match rc {
        0 => Ok(None),
        r if r == pid => {
            let time = |t: libc::timeval| {
                Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                    + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
            };
            let used = Used {
                cpu: time(usage.ru_utime) + time(usage.ru_stime),
                // Linux gives kilobytes.
                max_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
            };
            Ok(Some((std::process::ExitStatus::from_raw(status), used)))
        }
        _ => {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaped_child_tells_its_cpu_time_and_peak_memory() {
        // A shell that holds 30 MB in a variable, then spins a little.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("x=$(head -c 30000000 /dev/zero | tr '\\0' a); i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
            .spawn()
            .expect("sh");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let (status, used) = loop {
            if let Some(done) = reap(&mut child).expect("wait4") {
                break done;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the child never ended"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(status.success());
        assert!(used.cpu > Duration::from_millis(5), "{used:?}");
        assert!(used.max_rss > 30_000_000, "{used:?}");
    }

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
