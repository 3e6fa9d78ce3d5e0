//! `check-config`'s view of a [`Config`]: every setting's effective value
//! as it would be written, in the table's order, with secrets masked. Each
//! row of the table says how its value is shown; this file lists them (the
//! shared ways of showing live with the values, in `values.rs`).

use super::Config;
use super::table::SETTINGS;

impl Config {
    /// Every setting's effective value, as it would be written, with
    /// secrets masked.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        SETTINGS.iter().map(|s| (s.name, (s.show)(self))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Layers;

    /// Every setting away from its default, and what `check-config` showed
    /// for it before the table existed (taken from that binary): a row
    /// that writes one field and shows another, or shows it differently,
    /// fails here.
    const EVERY_SETTING_CHANGED: &[(&str, &str, &str)] = &[
        ("database", "users.db", "d/users.db"),
        (
            "session_store",
            "redis://:pw@cache.lan:6379/2",
            "redis://:***@cache.lan:6379/2",
        ),
        ("store_prefix", "gh1:", "gh1:"),
        ("listen", "0.0.0.0:8443", "0.0.0.0:8443"),
        ("threads", "3", "3"),
        ("bcrypt_cost", "9", "9"),
        ("idle_timeout", "90m", "90m"),
        ("absolute_timeout", "1d", "1d"),
        ("remember_idle_timeout", "2d", "2d"),
        ("remember_absolute_timeout", "3d", "3d"),
        ("touch_interval", "1500ms", "1500ms"),
        ("reap_interval", "2m", "2m"),
        ("audit_retention", "30d", "30d"),
        ("cookie.name", "sid", "sid"),
        ("cookie.domain", ".Example.LAN", "example.lan"),
        ("cookie.path", "/app", "/app"),
        ("cookie.secure", "true", "always"),
        ("cookie.same_site", "Strict", "strict"),
        (
            "secrets",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "*** (2 configured)",
        ),
        ("allow_registration", "yes", "true"),
        ("default_policy", "admins", "Admins"),
        ("public_url", "https://auth.lan/", "https://auth.lan/"),
        ("proxy_timeout", "5s", "5s"),
        ("max_connections", "77", "77"),
        ("header_timeout", "11s", "11s"),
        ("body_timeout", "31s", "31s"),
        ("keepalive_timeout", "1s", "1s"),
        ("proxy_underscore_headers", "on", "true"),
        ("log_requests", "off", "false"),
        ("metrics", "1", "true"),
        ("metrics_token", "tok", "*** (1 configured)"),
        ("trusted_proxies", "10.0.0.0/8, ::1", "10.0.0.0/8, ::1/128"),
        ("login_max_failures", "7", "7"),
        ("login_window", "1h", "1h"),
        ("login_lockout", "30s", "30s"),
        ("login_max_lockout", "2h", "2h"),
        ("admin_reauth", "0s", "0ms"),
        ("two_factor", "Required", "required"),
        ("max_sessions_per_user", "3", "3"),
        ("tls_cert", "c.pem", "d/c.pem"),
        ("tls_key", "/etc/k.pem", "/etc/k.pem"),
        ("hsts_max_age", "0s", "0ms"),
        ("hsts_include_subdomains", "true", "true"),
        ("redirect_http", "0.0.0.0:80", "0.0.0.0:80"),
        ("login_throttle_records", "12", "12"),
        ("login_queue_timeout", "3s", "3s"),
        ("oidc.code_lifetime", "20s", "20s"),
        ("oidc.access_token_lifetime", "10m", "10m"),
        ("oidc.refresh_token_lifetime", "7d", "7d"),
        ("oidc.id_token_lifetime", "15m", "15m"),
        (
            "ldap.url",
            "ldap://dc1.corp.lan:3268",
            "ldap://dc1.corp.lan:3268",
        ),
        ("ldap.insecure", "no", "false"),
        ("ldap.kind", "active_directory", "active_directory"),
        ("ldap.bind_dn", "cn=svc,dc=corp", "cn=svc,dc=corp"),
        ("ldap.bind_password", "hunter2", "*** (1 configured)"),
        ("ldap.base_dn", "dc=corp", "dc=corp"),
        ("ldap.user_filter", "(uid={username})", "(uid={username})"),
        ("ldap.username_attribute", "uid", "uid"),
        ("ldap.display_name_attribute", "cn", "cn"),
        ("ldap.email_attribute", "rfc822Mailbox", "rfc822Mailbox"),
        ("ldap.id_attribute", "objectSid", "objectSid"),
        ("ldap.group_lookup", "search", "search"),
        ("ldap.member_of_attribute", "isMemberOf", "isMemberOf"),
        ("ldap.group_base_dn", "ou=g,dc=corp", "ou=g,dc=corp"),
        ("ldap.group_filter", "(member={dn})", "(member={dn})"),
        ("ldap.group_name_attribute", "name", "name"),
        ("ldap.disabled_filter", "none", "none"),
        ("ldap.groups", "staff, Admins", "staff, Admins"),
        ("ldap.admin_group", "Admins", "Admins"),
        ("ldap.sync_interval", "1h", "1h"),
        ("ldap.connect_timeout", "2s", "2s"),
        ("ldap.operation_timeout", "3s", "3s"),
        ("ldap.max_connections", "4", "4"),
    ];

    #[test]
    fn each_setting_is_shown_from_the_field_its_row_fills() {
        let mut layers = Layers::new();
        layers.env(
            EVERY_SETTING_CHANGED
                .iter()
                .map(|(name, value, _)| (super::super::env_name(name), (*value).to_owned())),
        );
        let config = layers.build("d".into()).expect("valid");
        let effective = config.effective();
        for (name, _, shown) in EVERY_SETTING_CHANGED {
            let value = effective
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str());
            assert_eq!(value, Some(*shown), "{name}");
        }
    }

    #[test]
    fn the_default_policy_is_shown_even_without_apps() {
        let config = Layers::new().build("d".into()).expect("valid");
        let effective = config.effective();
        assert!(effective.contains(&("default_policy", "SignedIn".to_owned())));
        assert!(effective.contains(&("secrets", "(generated in d/secret)".to_owned())));
    }
}
