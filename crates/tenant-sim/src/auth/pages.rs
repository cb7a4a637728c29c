//! The server-rendered pages: sign-in (pick an account), "Permissions requested",
//! "Need admin approval", the device-code pages, error pages and the `form_post`
//! auto-submit form. Plain HTML, no scripts except the one Entra's `form_post` uses.

use std::fmt::Write as _;

use super::Account;

/// Escapes text for HTML element content and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font-family:'Segoe UI',sans-serif;background:#f2f2f2}}\
         main{{background:#fff;max-width:440px;margin:60px auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}}\
         button{{margin:4px 0;padding:6px 16px}} ul{{padding-left:20px}} .error{{color:#a80000}}\
         .account{{display:block;width:100%;text-align:left}}</style></head>\
         <body><main><div>Microsoft (simulated)</div>{body}</main></body></html>\n",
        title = escape(title)
    )
}

/// Entra's `form_post` answer: a form that posts `params` to the redirect URI.
pub(super) fn form_post(action: &str, params: &[(&str, &str)]) -> String {
    let mut inputs = String::new();
    for (name, value) in params {
        // Writing to a String cannot fail.
        let _ = write!(
            inputs,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\" />",
            escape(name),
            escape(value)
        );
    }
    format!(
        "<html><head><title>Working...</title></head><body>\
         <form method=\"POST\" name=\"hiddenform\" action=\"{action}\">{inputs}\
         <noscript><p>Script is disabled. Click Submit to continue.</p>\
         <input type=\"submit\" value=\"Submit\" /></noscript></form>\
         <script language=\"javascript\">window.setTimeout(function(){{document.forms[0].submit()}},0);</script>\
         </body></html>\n",
        action = escape(action)
    )
}

/// An error shown in the browser instead of a redirect (unknown app, unregistered
/// redirect URI, disabled account, expired flow).
pub(super) fn error_page(description: &str) -> String {
    page(
        "Sign in to your account",
        &format!(
            "<h1>Sorry, but we're having trouble signing you in.</h1><p class=\"error\" id=\"error\">{}</p>",
            escape(description).replace("\r\n", "<br>")
        ),
    )
}

fn list_items(items: &[String]) -> String {
    items.iter().fold(String::new(), |mut out, item| {
        let _ = write!(out, "<li>{}</li>", escape(item));
        out
    })
}

fn account_buttons(accounts: &[Account]) -> String {
    accounts.iter().fold(String::new(), |mut out, account| {
        let _ = write!(
            out,
            "<button class=\"account\" type=\"submit\" name=\"account\" value=\"{id}\">\
                 {name}<br><small>{upn}</small></button>",
            id = escape(&account.id),
            name = escape(&account.display_name),
            upn = escape(&account.user_principal_name)
        );
        out
    })
}

/// "Pick an account": one button per candidate, or a user name to type.
pub(super) fn sign_in(
    tenant: &str,
    flow: &str,
    accounts: &[Account],
    login_hint: Option<&str>,
    error: Option<&str>,
) -> String {
    let error = error
        .map(|text| format!("<p class=\"error\" id=\"error\">{}</p>", escape(text)))
        .unwrap_or_default();
    page(
        "Sign in to your account",
        &format!(
            "<h1>Pick an account</h1>{error}\
             <form method=\"post\" action=\"/{tenant}/login\" id=\"accounts\">\
             <input type=\"hidden\" name=\"flow\" value=\"{flow}\">{buttons}</form>\
             <form method=\"post\" action=\"/{tenant}/login\" id=\"other\">\
             <input type=\"hidden\" name=\"flow\" value=\"{flow}\">\
             <p><label>Use another account <input type=\"email\" name=\"login\" value=\"{hint}\" \
             placeholder=\"Email, phone, or Skype\"></label> \
             <button type=\"submit\">Next</button></p></form>",
            tenant = escape(tenant),
            flow = escape(flow),
            buttons = account_buttons(accounts),
            hint = escape(login_hint.unwrap_or_default())
        ),
    )
}

/// "Permissions requested" with Accept / Cancel, as Microsoft's consent prompt.
pub(super) fn consent(
    tenant: &str,
    flow: &str,
    account: &Account,
    client_id: &str,
    scopes: &[String],
) -> String {
    let items = list_items(scopes);
    let organization = if account.is_admin {
        "<p><label><input type=\"checkbox\" name=\"organization\" value=\"true\" checked> \
         Consent on behalf of your organization</label></p>"
    } else {
        ""
    };
    page(
        "Permissions requested",
        &format!(
            "<p>{upn}</p><h1>Permissions requested</h1>\
             <p>App {client} (unverified) needs permission to:</p><ul id=\"scopes\">{items}</ul>\
             <form method=\"post\" action=\"/{tenant}/Consent/Set\">\
             <input type=\"hidden\" name=\"flow\" value=\"{flow}\">{organization}\
             <button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button> \
             <button type=\"submit\" name=\"decision\" value=\"accept\">Accept</button></form>",
            upn = escape(&account.user_principal_name),
            client = escape(client_id),
            tenant = escape(tenant),
            flow = escape(flow),
        ),
    )
}

/// "Need admin approval": a non-admin asked for permissions only an admin can grant.
pub(super) fn admin_approval(
    tenant: &str,
    flow: &str,
    account: &Account,
    client_id: &str,
) -> String {
    page(
        "Need admin approval",
        &format!(
            "<p>{upn}</p><h1>Need admin approval</h1>\
             <p>App {client} needs permission to access resources in your organization \
             that only an admin can grant. Please ask an admin to grant permission to this \
             app before you can use it.</p>\
             <form method=\"post\" action=\"/{tenant}/Consent/Set\">\
             <input type=\"hidden\" name=\"flow\" value=\"{flow}\">\
             <button type=\"submit\" name=\"decision\" value=\"admin_required\">Return to the \
             application without granting consent</button></form>",
            upn = escape(&account.user_principal_name),
            client = escape(client_id),
            tenant = escape(tenant),
            flow = escape(flow),
        ),
    )
}

/// The device-code verification page: "Enter code".
pub(super) fn device_enter_code(error: Option<&str>) -> String {
    let error = error
        .map(|text| format!("<p class=\"error\" id=\"error\">{}</p>", escape(text)))
        .unwrap_or_default();
    page(
        "Enter code",
        &format!(
            "<h1>Enter code</h1><p>Enter the code displayed on your app or device.</p>{error}\
             <form method=\"post\" action=\"/devicelogin\">\
             <input type=\"text\" name=\"user_code\" placeholder=\"Code\" autocomplete=\"off\">\
             <button type=\"submit\">Next</button></form>"
        ),
    )
}

/// After the code: pick the account that approves, or cancel.
pub(super) fn device_pick_account(
    user_code: &str,
    accounts: &[Account],
    scopes: &[String],
) -> String {
    let items = list_items(scopes);
    page(
        "Pick an account",
        &format!(
            "<h1>Pick an account</h1><p>The app asks for:</p><ul id=\"scopes\">{items}</ul>\
             <form method=\"post\" action=\"/devicelogin/confirm\">\
             <input type=\"hidden\" name=\"user_code\" value=\"{code}\">{buttons}\
             <button type=\"submit\" name=\"decision\" value=\"cancel\">Cancel</button></form>",
            code = escape(user_code),
            buttons = account_buttons(accounts)
        ),
    )
}

/// The end of the device-code flow in the browser.
pub(super) fn device_done(approved: bool) -> String {
    if approved {
        page(
            "You're signed in",
            "<h1>You have signed in to the application on your device.</h1>\
             <p>You may now close this window.</p>",
        )
    } else {
        page(
            "Sign-in cancelled",
            "<h1>You cancelled the sign-in.</h1><p>You may now close this window.</p>",
        )
    }
}

/// The end of `/logout` without a registered `post_logout_redirect_uri`.
pub(super) fn signed_out() -> String {
    page(
        "Signed out",
        "<h1>You signed out of your account</h1><p>It's a good idea to close all browser windows.</p>",
    )
}
