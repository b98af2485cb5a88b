//! ipc2's benchmark, in one command: `cargo run --release -p ipc2_bench`.
//!
//! Measures the floors (raw blocking Unix sockets, bare process spawns),
//! ipc2 through its public API, and Python's process pools, then prints one
//! markdown table with each figure's ratio to its floor or peer. This file
//! only parses arguments and runs the parts in order; see `floor`, `pool`,
//! `python` and `report`.
//!
//! The same executable is also every child the bench needs, through hidden
//! subcommands: `floor-echo` (a floor's peer process), `pool-suite` (the
//! ipc2 host, so it can be pinned and its RSS is its own), `worker` (the
//! pools' worker), `service-worker` (the same jobs as an `#[ipc2::service]`),
//! `remote-worker` (the same, dialling over TLS) and `noop` (the bare-spawn
//! floor).

mod floor;
mod messages;
mod pool;
mod proc;
mod python;
mod remote;
mod report;
mod seed;
mod stats;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use report::Figures;
use stats::Budget;

const USAGE: &str = "\
usage: ipc2_bench [--quick] [--out PATH]

  --quick      smoke run (~20 s) instead of the full one (~2 min)
  --out PATH   also write the report (markdown) to PATH";

/// One part of the bench: measures and records into the figures.
type Part = fn(&Budget, &mut Figures);

struct Options {
    quick: bool,
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some(floor::CHILD_COMMAND) => floor::serve_child(&args[1..]),
        Some(pool::CHILD_COMMAND) => pool::suite_child(&args[1..]),
        Some(pool::HOT_COMMAND) => pool::hot_child(&args[1..]),
        Some(worker::WORKER_COMMAND) => worker::run(),
        Some(worker::SERVICE_WORKER_COMMAND) => worker::run_service(),
        Some(worker::REMOTE_WORKER_COMMAND) => worker::run_remote(),
        Some(worker::NOOP_COMMAND) => Ok(()),
        _ => match parse_options(&args) {
            Ok(Some(options)) => bench(&options),
            Ok(None) => {
                println!("{USAGE}");
                Ok(())
            }
            Err(message) => {
                eprintln!("{message}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc2_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` for `--help`.
fn parse_options(args: &[String]) -> Result<Option<Options>, String> {
    let mut options = Options {
        quick: false,
        out: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--out" => {
                let path = args.next().ok_or("--out needs a path")?;
                options.out = Some(path.into());
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(options))
}

fn bench(options: &Options) -> proc::Result<()> {
    let started = Instant::now();
    let budget = Budget::new(options.quick);
    let mut figures = Figures::default();
    let parts: [(&str, Part); 3] = [
        ("floors", floor::run),
        ("ipc2", pool::run),
        ("python", python::run),
    ];
    for (name, part) in parts {
        let part_started = Instant::now();
        eprintln!("ipc2_bench: measuring {name}...");
        part(&budget, &mut figures);
        eprintln!(
            "ipc2_bench: {name} took {:.1} s",
            part_started.elapsed().as_secs_f64()
        );
    }
    let text = report::render(&figures, &budget, started.elapsed());
    print!("{text}");
    if let Some(path) = &options.out {
        std::fs::write(path, &text)
            .map_err(|e| format!("could not write {}: {e}", path.display()))?;
    }
    Ok(())
}
