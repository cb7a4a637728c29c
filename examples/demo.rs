//! The whole product flow offline: a simulated Microsoft 365 tenant on 127.0.0.1, a new
//! connection (the simulated admin signs in and consents), the linked account listed, a
//! full import of users, groups and memberships, changes in the directory, and a delta
//! sync showing exactly what changed. No account, no network, no set-up:
//!
//! ```text
//! cargo run --example demo
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use connection_store::{ConnectionId, ConnectionStore, MemoryStore, OwnerId};
use m365_link_app::connect::{SignIn, create_connection, simulated_browser};
use m365_link_app::glue::Linked;
use m365_link_app::present::connections_table;
use m365_link_app::sync;
use tenant_sim::{Deletion, GroupFields, TenantSim, UserFields};

/// Run the m365-link flow against a simulated tenant: connect, list, full sync, change
/// the directory, delta sync.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Users in the simulated tenant.
    #[arg(long, default_value_t = 3000)]
    users: usize,
    /// Groups in the simulated tenant.
    #[arg(long, default_value_t = 150)]
    groups: usize,
    /// Seed of the simulated directory (same seed, same tenant).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the export (users, groups, memberships as JSON Lines) in this folder; by
    /// default it goes to a temporary folder removed at the end.
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    step("Starting a simulated Microsoft 365 tenant on 127.0.0.1");
    let sim = TenantSim::builder()
        .users(args.users)
        .groups(args.groups)
        .seed(args.seed)
        .start()
        .await
        .context("could not start tenant-sim")?;
    println!(
        "  tenant {} ({}), {} users, {} groups\n  sign-in at {}, Graph at {}",
        sim.tenant_id(),
        sim.tenant_domain(),
        args.users,
        args.groups,
        sim.login_base(),
        sim.graph_base()
    );

    // The service's store of linked accounts, and the customer account using it.
    let store: Arc<dyn ConnectionStore> = Arc::new(MemoryStore::new());
    let owner = OwnerId::new("demo-customer");

    let (sign_in, connection) = connect(&sim, store.as_ref(), &owner).await?;

    step("Linked Microsoft 365 accounts");
    println!("{}", connections_table(&store.list(&owner).await?));

    step("Manage → import employees: full sync");
    let linked = Linked::open(Arc::clone(&store), &owner, connection.id, &sign_in.app).await?;
    let keep = args.out.is_some();
    let out_dir = args.out.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("m365-link-demo-{}", uuid::Uuid::new_v4()))
    });
    let options = sync::Options::new(&out_dir)?;
    let target = sync::Target {
        store: Arc::clone(&store),
        owner: owner.clone(),
        id: connection.id,
    };
    sim.control().reset_counters();
    let report = sync::run(&linked.graph, &target, &options, &sync::NoProgress).await?;
    print_report(&report, sim.control().counters().total());
    if keep {
        println!("  export: {}", out_dir.display());
    }

    step("Meanwhile, in the tenant: people join, change jobs, leave; groups change");
    for line in change_the_directory(&sim)? {
        println!("  {line}");
    }

    step("Delta sync: only what changed");
    let before = exported(&out_dir, connection.id)?;
    sim.control().reset_counters();
    let report = sync::run(&linked.graph, &target, &options, &sync::NoProgress).await?;
    let after = exported(&out_dir, connection.id)?;
    for line in changes(&before, &after) {
        println!("  {line}");
    }
    print_report(&report, sim.control().counters().total());

    step("Linked Microsoft 365 accounts");
    println!("{}", connections_table(&store.list(&owner).await?));
    println!(
        "\nNext: `cargo run --example connect -- --help` links a real tenant, \
         `cargo run --example connections -- list` lists them."
    );
    sim.shutdown().await;
    if !keep {
        // Only the folder this run made; `--out` folders are the user's.
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    Ok(())
}

/// "Create a new connection" → name → "Connect": the simulated admin signs in and
/// consents, and the grant is saved as a connection.
async fn connect(
    sim: &TenantSim,
    store: &dyn ConnectionStore,
    owner: &OwnerId,
) -> anyhow::Result<(SignIn, connection_store::Connection)> {
    step("Create a new connection: \"Contoso (simulated)\" → Connect");
    let sign_in = SignIn::simulated(sim);
    // The simulator consents as its Global Administrator, as the admin would in a browser.
    let (_client, grant) = sign_in
        .browser(None, Duration::from_secs(30), |url| {
            println!(
                "  sign-in URL: {}…",
                &url.as_str()[..url.as_str().len().min(90)]
            );
            simulated_browser(url);
        })
        .await
        .context("the simulated sign-in failed")?;
    let connection = create_connection(
        store,
        owner,
        "Contoso (simulated)",
        sign_in.cloud.clone(),
        &grant,
    )
    .await?;
    println!(
        "  signed in as {} and consented to {}",
        connection.admin.username,
        connection.scopes.join(" ")
    );

    Ok((sign_in, connection))
}

fn step(title: &str) {
    println!("\n▶ {title}");
}

/// What the demo changes through the simulator's control API, described.
fn change_the_directory(sim: &TenantSim) -> anyhow::Result<Vec<String>> {
    let control = sim.control();
    let mut done = Vec::new();
    for name in ["Nina Neumann", "Omar Haddad", "Priya Raman"] {
        let user = control.add_user(&UserFields::new().display_name(name).job_title("Engineer"))?;
        done.push(format!("joined: {}", user.user_principal_name));
    }
    let people: Vec<_> = control
        .users()
        .into_iter()
        .filter(|u| !u.is_admin)
        .collect();
    let take = |index: usize| {
        people
            .get(index)
            .context("the tenant is too small for the demo")
    };
    for index in [10, 11] {
        let user = take(index)?;
        control.update_user(&user.id, &UserFields::new().job_title("Head of Sales"))?;
        done.push(format!("new job title: {}", user.user_principal_name));
    }
    let leaver = take(20)?;
    control.delete_user(&leaver.id, Deletion::Soft)?;
    done.push(format!(
        "deleted (restorable): {}",
        leaver.user_principal_name
    ));
    let gone = take(21)?;
    control.delete_user(&gone.id, Deletion::Permanent)?;
    done.push(format!("deleted permanently: {}", gone.user_principal_name));

    let team = control.add_group(
        GroupFields::new()
            .display_name("Signature Rollout")
            .description("Created during the demo"),
    )?;
    for index in [30, 31, 32] {
        control.add_member(&team.id, &take(index)?.id)?;
    }
    done.push(format!("new group {:?} with 3 members", team.display_name));
    let group = control
        .groups()
        .into_iter()
        .find(|g| g.member_count > 3 && g.member_count < 100)
        .context("the tenant has no small group")?;
    let members = control.group_member_ids(&group.id)?;
    if let Some(member) = members.first() {
        control.remove_member(&group.id, member)?;
        done.push(format!("removed a member from {:?}", group.display_name));
    }
    let newcomer = take(40)?;
    if !members.contains(&newcomer.id) {
        control.add_member(&group.id, &newcomer.id)?;
        done.push(format!(
            "added {} to {:?}",
            newcomer.user_principal_name, group.display_name
        ));
    }
    Ok(done)
}

/// The export the sync wrote for `id` in `dir`.
fn exported(dir: &std::path::Path, id: ConnectionId) -> anyhow::Result<sync::Snapshot> {
    Ok(sync::load_previous(dir, sync::Format::Jsonl, id)?
        .context("the sync wrote no export")?
        .snapshot)
}

/// What one sync reported, and the Graph requests the simulator counted.
fn print_report(report: &sync::Report, requests: u64) {
    println!(
        "  {} sync in {:.1?} with {requests} Graph requests",
        report.kind.label(),
        report.elapsed
    );
    println!("{}", report_table(report));
}

fn report_table(report: &sync::Report) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["", "total", "added", "updated", "deleted"]);
    for (name, counts) in [
        ("users", report.users),
        ("groups", report.groups),
        ("memberships", report.memberships),
    ] {
        table.add_row([
            name.to_owned(),
            counts.total.to_string(),
            counts.added.to_string(),
            counts.updated.to_string(),
            counts.deleted.to_string(),
        ]);
    }
    table
}

/// A user's or group's name in an export.
fn name_of(record: Option<&sync::Record>, key: &str, id: &str) -> String {
    record
        .and_then(|r| r.get(key))
        .and_then(serde_json::Value::as_str)
        .map_or_else(|| id.to_owned(), str::to_owned)
}

/// What changed between two exports, one line each: users by sign-in name, then
/// groups and their members.
fn changes(before: &sync::Snapshot, after: &sync::Snapshot) -> Vec<String> {
    const UPN: &str = "userPrincipalName";
    let user = |snapshot: &sync::Snapshot, id: &str| name_of(snapshot.users.get(id), UPN, id);
    // (order, sign-in name, line): updates, additions, deletions, each by name.
    let mut users: Vec<(u8, String, String)> = Vec::new();
    for (id, record) in &after.users {
        let upn = user(after, id);
        match before.users.get(id) {
            None => users.push((1, upn.clone(), format!("+ user {upn}"))),
            Some(old) if old != record => {
                let fields: Vec<String> = record
                    .iter()
                    .filter(|(key, value)| old.get(*key) != Some(*value))
                    .map(|(key, value)| {
                        let was = old
                            .get(key)
                            .map_or_else(|| "–".to_owned(), ToString::to_string);
                        format!("{key} {was} → {value}")
                    })
                    .collect();
                users.push((
                    0,
                    upn.clone(),
                    format!("~ user {upn}: {}", fields.join(", ")),
                ));
            }
            Some(_) => {}
        }
    }
    for id in before
        .users
        .keys()
        .filter(|id| !after.users.contains_key(*id))
    {
        let upn = user(before, id);
        users.push((2, upn.clone(), format!("- user {upn}")));
    }
    users.sort();
    let mut lines: Vec<String> = users.into_iter().map(|(_, _, line)| line).collect();
    let empty = BTreeMap::new();
    for (id, record) in &after.groups {
        let group = name_of(Some(record), "displayName", id);
        if !before.groups.contains_key(id) {
            lines.push(format!("+ group {group:?}"));
        }
        let old = before.members.get(id).unwrap_or(&empty);
        let new = after.members.get(id).unwrap_or(&empty);
        for member in new.keys().filter(|m| !old.contains_key(*m)) {
            lines.push(format!("+ member {} of {group:?}", user(after, member)));
        }
        for member in old.keys().filter(|m| !new.contains_key(*m)) {
            lines.push(format!("- member {} of {group:?}", user(before, member)));
        }
    }
    for (id, record) in &before.groups {
        if !after.groups.contains_key(id) {
            lines.push(format!(
                "- group {:?}",
                name_of(Some(record), "displayName", id)
            ));
        }
    }
    lines
}
