//! Who had the machine's two cores during a phase of the soak: the emulator, this process
//! (daemon, feeder and clients), and the rest (idle, stolen by the hypervisor). A run whose
//! throughput dips shows here whether the daemon spent more CPU per message, the emulator
//! did, or neither did and the time went elsewhere.

use std::time::{Duration, Instant};

use super::stages::cpu_time_of;

/// The machine-wide CPU counters of `/proc/stat`'s first line, in ticks.
#[derive(Debug, Clone, Copy, Default)]
struct MachineTicks {
    total: u64,
    idle: u64,
    steal: u64,
}

impl MachineTicks {
    fn since(self, earlier: MachineTicks) -> MachineTicks {
        MachineTicks {
            total: self.total.saturating_sub(earlier.total),
            idle: self.idle.saturating_sub(earlier.idle),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }

    fn plus(self, other: MachineTicks) -> MachineTicks {
        MachineTicks {
            total: self.total + other.total,
            idle: self.idle + other.idle,
            steal: self.steal + other.steal,
        }
    }

    fn share(part: u64, total: u64) -> f64 {
        part as f64 * 100.0 / total.max(1) as f64
    }
}

fn machine_ticks() -> MachineTicks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    let at = |index: usize| fields.get(index).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    MachineTicks {
        total: (0..8).map(at).sum(),
        idle: at(3) + at(4),
        steal: at(7),
    }
}

/// Counters at the start of a phase.
pub struct Snapshot {
    at: Instant,
    own: Duration,
    emulator: Duration,
    machine: MachineTicks,
    emulator_pid: String,
}

impl Snapshot {
    pub fn take(emulator_pid: Option<u32>) -> Snapshot {
        let emulator_pid = emulator_pid.map(|pid| pid.to_string()).unwrap_or_default();
        Snapshot {
            at: Instant::now(),
            own: cpu_time_of("self"),
            emulator: cpu_time_of(&emulator_pid),
            machine: machine_ticks(),
            emulator_pid,
        }
    }

    /// What happened since this snapshot, over `messages` messages done in `wall`.
    pub fn phase(&self, name: &'static str, messages: usize, wall: Duration) -> Phase {
        Phase {
            name,
            messages,
            wall,
            since_snapshot: self.at.elapsed(),
            own: cpu_time_of("self").saturating_sub(self.own),
            emulator: cpu_time_of(&self.emulator_pid).saturating_sub(self.emulator),
            machine: machine_ticks().since(self.machine),
        }
    }
}

/// One phase's figures, or the sum of several turns of it.
pub struct Phase {
    pub name: &'static str,
    messages: usize,
    /// From the first send to the last message done: what the rate is computed from.
    pub wall: Duration,
    /// From the snapshot to the end, over which the CPU counters were read.
    since_snapshot: Duration,
    own: Duration,
    emulator: Duration,
    machine: MachineTicks,
}

impl Phase {
    pub fn empty(name: &'static str) -> Phase {
        Phase {
            name,
            messages: 0,
            wall: Duration::ZERO,
            since_snapshot: Duration::ZERO,
            own: Duration::ZERO,
            emulator: Duration::ZERO,
            machine: MachineTicks::default(),
        }
    }

    /// Adds another turn of the same phase.
    pub fn add(&mut self, turn: Phase) {
        self.messages += turn.messages;
        self.wall += turn.wall;
        self.since_snapshot += turn.since_snapshot;
        self.own += turn.own;
        self.emulator += turn.emulator;
        self.machine = self.machine.plus(turn.machine);
    }

    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.wall.as_secs_f64()
    }
}

fn per_message(cpu: Duration, messages: usize) -> f64 {
    cpu.as_secs_f64() * 1000.0 / messages.max(1) as f64
}

pub fn print(phases: &[Phase]) {
    println!(
        "{:<30} {:>8} {:>16} {:>12} {:>16} {:>7} {:>7}",
        "who had the CPU",
        "msg/s",
        "emulator ms/msg",
        "emulator %",
        "this proc ms/msg",
        "idle %",
        "steal %"
    );
    for phase in phases {
        println!(
            "{:<30} {:>8.1} {:>16.2} {:>12.0} {:>16.2} {:>7.0} {:>7.1}",
            phase.name,
            phase.rate(),
            per_message(phase.emulator, phase.messages),
            phase.emulator.as_secs_f64() * 100.0 / phase.since_snapshot.as_secs_f64(),
            per_message(phase.own, phase.messages),
            MachineTicks::share(phase.machine.idle, phase.machine.total),
            MachineTicks::share(phase.machine.steal, phase.machine.total),
        );
    }
    println!(
        "(emulator % is of one core; idle and steal are of the whole machine, {} cores)",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
}
