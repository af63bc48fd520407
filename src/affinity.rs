//! `server.pin_workers`: each serving thread kept on a CPU of its own, chosen among those the
//! process may use (its affinity when it starts, e.g. systemd's `CPUAffinity=`), as nginx's
//! `worker_cpu_affinity auto` does for its worker processes. Nothing else about the threads
//! lives here (see `run` in the crate root).
//!
//! Why: a serving thread that the scheduler moves, or parks behind another thread on its CPU
//! while the other CPU idles, holds every request of its connections until it runs again (a
//! scheduler tick, 4 ms here). Kept apart, two workers stop waiting on each other.
//!
//! A thread starts with its creator's CPUs: the threads the first worker starts later (tokio's
//! blocking pool: name resolution for token endpoints, file reads on reload) share its CPU.

/// The CPUs this process may run on, in order (empty where that cannot be known).
pub fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        use rustix::thread::{CpuSet, sched_getaffinity};
        match sched_getaffinity(None) {
            Ok(set) => (0..CpuSet::MAX_CPU).filter(|&cpu| set.is_set(cpu)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the CPUs this process may use; workers are not pinned.");
                Vec::new()
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// The CPU worker `n` is kept on: the `n`th of `cpus`, wrapping when there are more workers.
pub fn cpu_for(cpus: &[usize], n: usize) -> Option<usize> {
    cpus.get(n.checked_rem(cpus.len())?).copied()
}

/// Keeps the calling thread on `cpu`; says so, or why not (the thread then runs where the
/// scheduler puts it).
pub fn pin_current_thread(worker: usize, cpu: usize) {
    #[cfg(target_os = "linux")]
    {
        use rustix::thread::{CpuSet, sched_setaffinity};
        let mut set = CpuSet::new();
        set.set(cpu);
        match sched_setaffinity(None, &set) {
            Ok(()) => tracing::debug!(worker, cpu, "Serving thread pinned."),
            Err(e) => tracing::warn!(worker, cpu, error = %e, "Could not pin a serving thread; it runs unpinned."),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        tracing::warn!(worker, cpu, "Pinning serving threads is supported on Linux only; it runs unpinned.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_take_the_allowed_cpus_in_turn() {
        assert_eq!(cpu_for(&[2, 5, 7], 0), Some(2));
        assert_eq!(cpu_for(&[2, 5, 7], 2), Some(7));
        assert_eq!(cpu_for(&[2, 5, 7], 4), Some(5), "more workers than CPUs: round again");
        assert_eq!(cpu_for(&[], 0), None);
    }

    /// A thread pinned to one of the allowed CPUs reports exactly that CPU as its set, and
    /// other threads keep theirs.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_pinned_thread_runs_on_its_cpu_only() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty(), "this process may run somewhere");
        let last = *cpus.last().expect("a CPU");
        let seen = std::thread::spawn(move || {
            pin_current_thread(0, last);
            allowed_cpus()
        })
        .join()
        .expect("thread");
        assert_eq!(seen, vec![last]);
        assert_eq!(allowed_cpus(), cpus, "the test's own thread is untouched");
    }
}
