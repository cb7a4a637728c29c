//! `tenant-sim`: runs a simulated Microsoft 365 tenant on 127.0.0.1 until Ctrl-C or
//! SIGTERM, and prints, as its first stdout line, one JSON object with the URLs and
//! credentials. Either signal shuts it down gracefully, removing the temporary
//! certificate folder of `--tls`.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tenant_sim::TenantSim;

/// A simulated Microsoft 365 tenant (Entra v2.0 + Graph v1.0) on loopback.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Login listener port; the Graph listener takes the next one. 0: any free ports.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Number of tenants served by the one login host and the one Graph host.
    #[arg(long, default_value_t = 1)]
    tenants: usize,
    /// Number of users per tenant.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Number of groups per tenant.
    #[arg(long, default_value_t = 20)]
    groups: usize,
    /// Seed of the generated directory and credentials.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Throttle at R Graph resource units per second (burst R).
    #[arg(long, value_name = "R")]
    rate_limit: Option<f64>,
    /// Latency added to every Graph request, in milliseconds.
    #[arg(long, value_name = "L")]
    latency_ms: Option<u64>,
    /// Probability (0..=1) of a seeded fault per Graph request.
    #[arg(long, value_name = "P")]
    fault_rate: Option<f64>,
    /// Serve https with a self-signed certificate (its PEM path is in the JSON line).
    #[arg(long)]
    tls: bool,
    /// The primary domain of tenant 0.
    #[arg(long, default_value = "contoso.onmicrosoft.com")]
    tenant_domain: String,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    access_token_lifetime: u64,
    /// Lifetime in seconds of CAE access tokens (requests whose claims declare cp1).
    #[arg(long, default_value_t = 28 * 3600)]
    cae_access_token_lifetime: u64,
    /// Most entries on one delta page.
    #[arg(long, default_value_t = 100)]
    delta_page_size: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let graph_port = if args.port == 0 {
        0
    } else {
        args.port.saturating_add(1)
    };
    let mut builder = TenantSim::builder()
        .tenants(args.tenants)
        .users(args.users)
        .groups(args.groups)
        .seed(args.seed)
        .tls(args.tls)
        .tenant_domain(args.tenant_domain)
        .access_token_lifetime(Duration::from_secs(args.access_token_lifetime))
        .cae_access_token_lifetime(Duration::from_secs(args.cae_access_token_lifetime))
        .delta_page_size(args.delta_page_size)
        .login_port(args.port)
        .graph_port(graph_port);
    if let Some(rate) = args.rate_limit {
        builder = builder.rate_limit(rate);
    }
    if let Some(latency) = args.latency_ms {
        builder = builder.latency(Duration::from_millis(latency));
    }
    if let Some(rate) = args.fault_rate {
        builder = builder.fault_rate(rate);
    }
    let sim = match builder.start().await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("tenant-sim: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Listening before the JSON line goes out: whoever reads it may signal at once.
    let stop = match StopSignals::listen() {
        Ok(stop) => stop,
        Err(error) => {
            eprintln!("tenant-sim: cannot listen for signals: {error}");
            sim.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{}", sim.startup_json())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        drop(stdout);
        sim.shutdown().await;
        return ExitCode::FAILURE;
    }
    drop(stdout);
    eprintln!(
        "tenant-sim: serving {} and {} (Ctrl-C or SIGTERM stops)",
        sim.login_base(),
        sim.graph_base()
    );
    let signal = stop.recv().await;
    eprintln!("tenant-sim: {signal}; shutting down");
    sim.shutdown().await;
    ExitCode::SUCCESS
}

/// The signals that stop the simulator: SIGINT (Ctrl-C) and SIGTERM on Unix, Ctrl-C
/// elsewhere. Made before the startup line is printed, so a signal sent as soon as it
/// is read is already caught rather than ending the process without clean-up.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers.
    #[cfg(unix)]
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Nothing to install ahead: Ctrl-C is listened for when awaited.
    #[cfg(not(unix))]
    #[expect(clippy::unnecessary_wraps, reason = "the same signature as on Unix")]
    fn listen() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// Waits for the first stop signal and names it.
    #[cfg(unix)]
    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "interrupted (SIGINT)",
            _ = self.terminate.recv() => "terminated (SIGTERM)",
        }
    }

    /// Waits for Ctrl-C and names it (or why it cannot be waited for).
    #[cfg(not(unix))]
    async fn recv(self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "interrupted (Ctrl-C)",
            Err(_) => "cannot wait for Ctrl-C",
        }
    }
}
