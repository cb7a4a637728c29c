//! The pages, as maud templates: every value is escaped by the template engine, and no
//! page needs JavaScript (a running sync refreshes its page with a `meta` refresh).

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::employees::{Employee, EmployeePage, GroupChoices};
use super::jobs::JobState;
use super::scope::SyncScope;

/// The base path of the integration's pages.
pub(crate) const BASE: &str = "/integrations/microsoft-365";

/// What every page needs: who is signed in, and the CSRF token for its forms.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The signed-in customer's email.
    pub customer: Option<String>,
    /// The session's CSRF token.
    pub csrf: String,
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1b1b1b;background:#f5f6f8}
header{background:#24304a;color:#fff;padding:.7em 1.5em;display:flex;align-items:center;gap:1em}
header .brand{font-weight:600;flex:1}header form{margin:0}
main{max-width:1240px;margin:1.5em auto;background:#fff;padding:1.5em 2em;border-radius:6px;box-shadow:0 1px 3px #0002}
a{color:#0b5cad}h1{font-size:1.5em;margin-top:0}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;font-size:.92em}th,td{text-align:left;padding:.45em .5em;border-bottom:1px solid #e3e5e8;vertical-align:top}
th{background:#f0f2f5}.card{border:1px solid #dde;border-radius:6px;padding:1em 1.2em;max-width:420px}
.button,button{background:#0b5cad;color:#fff;border:0;border-radius:4px;padding:.45em 1em;font-size:.95em;cursor:pointer;text-decoration:none;display:inline-block}
button.secondary{background:#5b6470}button.danger,.button.danger{background:#b3261e}
header button{background:#3d4b6b}
input[type=text],input[type=email],input[type=password],input[type=search]{padding:.4em;font-size:1em;width:22em;max-width:100%}
.field-error,.form-error{color:#b3261e;margin:.3em 0}.flash{background:#e7f4e8;border:1px solid #9ccc9f;padding:.6em 1em;border-radius:4px}
.status-active{color:#1e7b34;font-weight:600}.status-needs_reconnect{color:#b3261e;font-weight:600}.status-disabled{color:#666}
.progress{padding:.6em 1em;border-radius:4px;background:#f0f2f5}.muted{color:#666}
.photo img{width:32px;height:32px;border-radius:50%}td.phones{white-space:nowrap}td.mail{overflow-wrap:anywhere;min-width:10em}td.address{min-width:11em}#employees{font-size:.85em}
fieldset{border:1px solid #dde;border-radius:6px}.groups{max-height:12em;overflow:auto}
";

/// The frame around every page.
pub(crate) fn layout(ctx: &Ctx, title: &str, refresh: bool, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh { meta http-equiv="refresh" content="2"; }
                title { (title) " – Signatures" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    span.brand { "Signatures · admin" }
                    @if let Some(customer) = &ctx.customer {
                        span #customer { (customer) }
                        form method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(ctx.csrf);
                            button #sign-out type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// The customer sign-in page.
pub(crate) fn sign_in(ctx: &Ctx, email: &str, error: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        p.muted { "Sign in to your Signatures account." }
        form #sign-in-form method="post" action="/sign-in" {
            (csrf_field(ctx))
            @if let Some(error) = error { p.form-error { (error) } }
            p { label for="email" { "Email" } br; input #email type="email" name="email" value=(email) required autofocus; }
            p { label for="password" { "Password" } br; input #password type="password" name="password" required; }
            button #sign-in type="submit" { "Sign in" }
        }
    };
    layout(ctx, "Sign in", false, &body)
}

/// "Integrations", with the Microsoft 365 card.
pub(crate) fn integrations(ctx: &Ctx) -> Markup {
    let body = html! {
        h1 { "Integrations" }
        div.card {
            h2 { "Microsoft 365 – User Sync" }
            p { "Import your employees from Microsoft 365 (Microsoft Entra ID) and keep their details up to date for their email signatures." }
            a #integrate-m365 .button href=(BASE) { "Integrate" }
        }
    };
    layout(ctx, "Integrations", false, &body)
}

/// One row of "Linked Microsoft 365 accounts".
#[derive(Debug, Clone)]
pub(crate) struct ConnectionRow {
    /// The connection id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The tenant id.
    pub tenant: String,
    /// The admin who connected it.
    pub admin: String,
    /// The status's stable name, its CSS class (`ConnectionStatus::kind`).
    pub status_kind: String,
    /// The status in words: [`crate::present::status_words`].
    pub status: String,
    /// The last sync time, or "never".
    pub last_sync: String,
    /// Employees imported (in scope), when a sync has run.
    pub users: Option<u64>,
}

/// A connection's status, coloured by its kind (the list and the Manage page).
fn status(row: &ConnectionRow) -> Markup {
    html! { span class={ "status-" (row.status_kind) } { (row.status) } }
}

/// "Linked Microsoft 365 accounts".
pub(crate) fn linked_accounts(ctx: &Ctx, rows: &[ConnectionRow], flash: Option<&str>) -> Markup {
    let body = html! {
        p { a href="/integrations" { "Integrations" } " › Microsoft 365 – User Sync" }
        h1 { "Microsoft 365 – User Sync" }
        @if let Some(flash) = flash { p #flash .flash { (flash) } }
        h2 { "Linked Microsoft 365 accounts" }
        @if rows.is_empty() {
            p #no-connections .muted { "No Microsoft 365 account is linked yet." }
        } @else {
            table #connections {
                thead { tr { th { "Name" } th { "Tenant" } th { "Connected by" } th { "Status" } th { "Last sync" } th { "Users imported" } th {} } }
                tbody {
                    @for row in rows {
                        tr.connection data-connection-id=(row.id) {
                            td.name { (row.name) }
                            td.tenant { code { (row.tenant) } }
                            td.admin { (row.admin) }
                            td.status { (status(row)) }
                            td.last-sync { (row.last_sync) }
                            td.users { @match row.users { Some(n) => (n), None => "–" } }
                            td { a.manage href={ (BASE) "/connections/" (row.id) } { "Manage" } }
                        }
                    }
                }
            }
        }
        p { a #create-connection .button href={ (BASE) "/new" } { "Create a new connection" } }
    };
    layout(ctx, "Linked Microsoft 365 accounts", false, &body)
}

/// "Create a new connection".
pub(crate) fn new_connection(ctx: &Ctx, name: &str, error: Option<&str>) -> Markup {
    let body = html! {
        p { a href=(BASE) { "‹ Linked Microsoft 365 accounts" } }
        h1 { "Create a new connection" }
        p { "Give the connection a meaningful name, for example the country or company it imports. "
            "Then sign in to Microsoft 365 as an administrator and accept the permissions: "
            code { "User.Read.All" } ", " code { "Group.Read.All" } " and " code { "offline_access" } "." }
        form #new-connection method="post" action={ (BASE) "/new" } {
            (csrf_field(ctx))
            p {
                label for="name" { "Connection name" } br;
                input #name type="text" name="name" value=(name) maxlength=(connection_store::MAX_NAME_CHARS) placeholder="Signature Microsoft 365 account Germany" autofocus;
                @if let Some(error) = error { span #name-error .field-error { " " (error) } }
            }
            button #connect type="submit" { "Connect" }
        }
    };
    layout(ctx, "Create a new connection", false, &body)
}

/// A Microsoft sign-in that did not lead to a connection, in plain words.
pub(crate) fn sign_in_failed(
    ctx: &Ctx,
    headline: &str,
    detail: &str,
    admin_link: Option<&str>,
) -> Markup {
    let body = html! {
        h1 { (headline) }
        p #sign-in-error { (detail) }
        @if let Some(link) = admin_link {
            p { "Forward this link to your IT administrator. After they approve the permissions for your organization, press “Create a new connection” again:" }
            p { a #admin-consent-link href=(link) { (link) } }
        }
        p { a href=(BASE) { "Back to the linked Microsoft 365 accounts" } }
    };
    layout(ctx, headline, false, &body)
}

/// The page an IT admin sees after approving through a forwarded link.
pub(crate) fn admin_consent_done(ctx: &Ctx, approved: bool, detail: &str) -> Markup {
    let title = if approved {
        "Permissions approved"
    } else {
        "Permissions not approved"
    };
    let body = html! {
        h1 { (title) }
        p #admin-consent-result { (detail) }
        p { a href=(BASE) { "Go to the linked Microsoft 365 accounts" } }
    };
    layout(ctx, title, false, &body)
}

/// Everything the Manage page shows.
#[derive(Debug)]
pub(crate) struct ManageView<'a> {
    /// The connection as a row.
    pub row: &'a ConnectionRow,
    /// The reason shown when it needs a reconnect.
    pub reconnect_reason: Option<&'a str>,
    /// The sync job's state.
    pub job: &'a JobState,
    /// The sync scope.
    pub scope: &'a SyncScope,
    /// The groups to choose from, from the mirror.
    pub groups: &'a GroupChoices,
    /// A scope form error.
    pub scope_error: Option<&'a str>,
    /// A rename error, and the name tried.
    pub rename_error: Option<(&'a str, &'a str)>,
    /// The employees page shown.
    pub employees: &'a EmployeePage,
    /// The search text.
    pub q: &'a str,
    /// A flash message.
    pub flash: Option<&'a str>,
    /// Why the imported data could not be read (shown instead of failing the page).
    pub problem: Option<&'a str>,
}

/// The sync's state in words, for the page and the status JSON.
pub(crate) fn progress_text(job: &JobState) -> String {
    match job {
        JobState::Idle => "No sync has run since the app started. Press “Sync now”, or wait for the scheduled sync.".to_owned(),
        JobState::Running { phase, counts } => {
            let mut text = "Running".to_owned();
            if let Some(phase) = phase { text.push_str(": "); text.push_str(phase); }
            let done: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            if !done.is_empty() { text.push_str(" ("); text.push_str(&done.join(", ")); text.push(')'); }
            text.push('…');
            text
        }
        JobState::Done { kind, users, groups, changed, finished_at } => {
            let at = crate::present::page_time(*finished_at);
            match kind.as_str() {
                "delta" => format!("Done: delta sync at {at} — {changed} users added, changed or removed; {users} users and {groups} groups in Microsoft 365."),
                "resync" => format!("Done: full import at {at} (Microsoft had expired the delta links) — {users} users and {groups} groups in Microsoft 365."),
                _ => format!("Done: full import at {at} — {users} users and {groups} groups in Microsoft 365."),
            }
        }
        JobState::NeedsReconnect { .. } => {
            "Stopped: Microsoft no longer accepts this connection's sign-in; it needs a reconnect (see Status above).".to_owned()
        }
        JobState::Failed { message, .. } => format!("Failed: {message}"),
    }
}

fn progress(job: &JobState) -> Markup {
    html! { p #sync-progress .progress data-state=(job.name()) { (progress_text(job)) } }
}

fn employee_row(base: &str, e: &Employee) -> Markup {
    html! {
        tr.employee data-user-id=(e.id) {
            td.photo { img src={ (base) "/employees/" (path_segment(&e.id)) "/photo" } alt="" loading="lazy"; }
            td.name { (e.display_name.as_deref().unwrap_or("")) }
            td.job-title { (e.job_title.as_deref().unwrap_or("")) }
            td.department { (e.department.as_deref().unwrap_or("")) }
            td.company { (e.company_name.as_deref().unwrap_or("")) }
            td.phones { @for (n, phone) in e.phones().iter().enumerate() { @if n > 0 { br; } (phone) } }
            td.mail { (e.mail.as_deref().unwrap_or("")) }
            td.office { (e.office_location.as_deref().unwrap_or("")) }
            td.address { (e.address_line()) }
        }
    }
}

/// The Manage page of one connection.
pub(crate) fn manage(ctx: &Ctx, view: &ManageView<'_>) -> Markup {
    let row = view.row;
    let base = format!("{BASE}/connections/{}", row.id);
    let page = view.employees;
    let running = matches!(view.job, JobState::Running { .. });
    let mode_groups = !view.scope.groups.is_empty();
    let page_link = |n: u64| {
        let mut url = format!("{base}?page={n}");
        if !view.q.is_empty() {
            url.push_str("&q=");
            url.push_str(
                &url::form_urlencoded::byte_serialize(view.q.as_bytes()).collect::<String>(),
            );
        }
        url
    };
    let body = html! {
        p { a href=(BASE) { "‹ Linked Microsoft 365 accounts" } }
        h1 { (row.name) }
        @if let Some(flash) = view.flash { p #flash .flash { (flash) } }
        table {
            tr { th { "Status" } td #status { (status(row)) @if let Some(reason) = view.reconnect_reason { br; span.muted { (reason) } } } }
            tr { th { "Tenant" } td #tenant { code { (row.tenant) } } }
            tr { th { "Connected by" } td #admin { (row.admin) } }
            tr { th { "Last sync" } td #last-sync { (row.last_sync) } }
        }
        @if view.reconnect_reason.is_some() {
            form #reconnect method="post" action={ (base) "/reconnect" } {
                (csrf_field(ctx))
                p { "Microsoft no longer accepts this connection's sign-in. An administrator of the tenant signs in again to resume the sync." }
                button #reconnect-submit type="submit" { "Reconnect" }
            }
        }

        h2 { "Sync" }
        (progress(view.job))
        form #sync-now method="post" action={ (base) "/sync" } {
            (csrf_field(ctx))
            button #sync-now-submit type="submit" disabled[running] { "Sync now" }
            span.muted { " Every connection is also synced automatically, by delta." }
        }

        h2 { "Sync scope" }
        form #scope method="post" action={ (base) "/scope" } {
            (csrf_field(ctx))
            @if let Some(error) = view.scope_error { p #scope-error .field-error { (error) } }
            p {
                label { input type="radio" name="mode" value="all" checked[!mode_groups]; " All users" } br;
                label { input type="radio" name="mode" value="groups" checked[mode_groups]; " Only members of these groups (including nested groups):" }
            }
            @if view.groups.groups.is_empty() {
                p.muted { "The groups appear here after the first sync." }
            } @else {
                @if view.groups.total > view.groups.groups.len() as u64 {
                    p #groups-truncated .muted { "The first " (view.groups.groups.len()) " of " (view.groups.total) " groups are listed (by name), and the chosen ones." }
                }
                fieldset.groups {
                    @for (id, name) in &view.groups.groups {
                        label { input type="checkbox" name="group" value=(id) checked[view.scope.groups.contains(id)]; " " (name) } br;
                    }
                }
            }
            p {
                label { input type="checkbox" name="skip_disabled" value="on" checked[view.scope.skip_disabled]; " Skip disabled accounts" } br;
                label { input type="checkbox" name="skip_guests" value="on" checked[view.scope.skip_guests]; " Skip guests" }
            }
            p.muted { "The sync reads the whole directory, which its delta rounds need; the scope decides who is imported as an employee: the table below, the count in the list, and the signatures." }
            button #scope-submit type="submit" { "Save scope" }
        }

        h2 { "Rename" }
        form #rename method="post" action={ (base) "/rename" } {
            (csrf_field(ctx))
            @let (tried, error) = match view.rename_error { Some((tried, error)) => (tried, Some(error)), None => (row.name.as_str(), None) };
            input #rename-name type="text" name="name" value=(tried) maxlength=(connection_store::MAX_NAME_CHARS);
            " " button #rename-submit type="submit" { "Rename" }
            @if let Some(error) = error { span #rename-error .field-error { " " (error) } }
        }

        h2 { "Imported employees" }
        @if let Some(problem) = view.problem {
            p #data-error .form-error { "The imported data could not be read (" (problem) "). Run “Sync now” to import it again." }
        }
        form #employee-search method="get" action=(base) {
            input type="search" name="q" value=(view.q) placeholder="Search name, email, title, department…";
            " " button.secondary type="submit" { "Search" }
        }
        p #employees-count { (page.total) @if page.total == 1 { " employee" } @else { " employees" } @if !view.q.is_empty() { " matching" } }
        @if !page.items.is_empty() {
            table #employees {
                thead { tr { th {} th { "Name" } th { "Job title" } th { "Department" } th { "Company" } th { "Phones" } th { "Email" } th { "Office" } th { "Address" } } }
                tbody { @for e in &page.items { (employee_row(&base, e)) } }
            }
        }
        p #employees-pager {
            @if page.has_prev() { a.prev href=(page_link(page.page - 1)) { "‹ Previous" } " " }
            "Page " (page.page) " of " (page.pages)
            @if page.has_next() { " " a.next href=(page_link(page.page + 1)) { "Next ›" } }
        }

        h2 { "Remove" }
        p { a #remove .button .danger href={ (base) "/remove" } { "Remove this connection" } }
    };
    layout(ctx, &row.name, running, &body)
}

/// "Remove this connection?"
pub(crate) fn confirm_remove(ctx: &Ctx, id: &str, name: &str) -> Markup {
    let body = html! {
        h1 { "Remove “" (name) "”?" }
        p { "The connection, its saved sign-in and its imported employees are deleted from Signatures. Nothing changes in Microsoft 365; an administrator can also remove the app's permissions in Microsoft Entra." }
        form #confirm-remove method="post" action={ (BASE) "/connections/" (id) "/remove" } {
            (csrf_field(ctx))
            button #confirm-remove-submit .danger type="submit" { "Remove" }
            " " a href={ (BASE) "/connections/" (id) } { "Cancel" }
        }
    };
    layout(ctx, "Remove connection", false, &body)
}

/// An error page (404, 403, 500...).
pub(crate) fn error(ctx: &Ctx, title: &str, detail: &str) -> Markup {
    let body = html! {
        h1 { (title) }
        p #error { (detail) }
        p { a href="/" { "Home" } }
    };
    layout(ctx, title, false, &body)
}

/// `text` percent-encoded for a URL path segment.
fn path_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A round thumbnail with a person's initials, for employees without a photo.
pub(crate) fn initials_svg(name: &str) -> Markup {
    let initials: String = name
        .split_whitespace()
        .filter_map(|word| word.chars().next())
        .filter(|c| c.is_alphanumeric())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect();
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width="48" height="48" viewBox="0 0 48 48" {
            circle cx="24" cy="24" r="24" fill="#c9d3e3" {}
            text x="24" y="30" font-family="sans-serif" font-size="18" text-anchor="middle" fill="#24304a" { (initials) }
        }
    }
}
