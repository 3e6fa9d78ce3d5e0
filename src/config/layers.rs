//! The layers a configuration is read from, later ones winning: the
//! table's defaults < the file (`gatehouse.toml`) < the environment
//! (`GATEHOUSE_*`) < command-line flags. Each layer only collects text and
//! remembers where it came from; [`Layers::build`] then runs every table
//! row's parser once, so a bad value is reported naming the setting and its
//! source. Unknown names are refused in the file and warned about in the
//! environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::auth::access::Access;
use crate::auth::apps::{AppSpec, Apps};
use crate::oidc::{ClientSpec, Clients};

use super::check::tls_files;
use super::table::{Draft, SETTINGS, Set, Setting, find};
use super::{Config, ConfigError};

#[derive(Clone, Debug)]
enum Raw {
    One(String),
    List(Vec<String>),
}

#[derive(Clone, Debug)]
struct Value {
    raw: Raw,
    source: String,
}

/// Collects raw values from each layer, later layers winning.
#[derive(Default)]
pub struct Layers {
    values: BTreeMap<&'static str, Value>,
    apps: Vec<AppSpec>,
    clients: Vec<ClientSpec>,
}

/// Environment variables gatehouse reads that are not settings (the
/// command line's own, see `cli/`).
const OTHER_VARS: &[&str] = &["GATEHOUSE_DATA", "GATEHOUSE_CONFIG"];

/// Warnings for `GATEHOUSE_*` variables that are no setting (a typo such as
/// `GATEHOUSE_IDLE_TIMOUT` is otherwise ignored in silence), each naming
/// the setting it probably meant.
pub fn unknown_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let known: Vec<String> = SETTINGS
        .iter()
        .map(Setting::env)
        .chain(OTHER_VARS.iter().map(|v| (*v).to_owned()))
        .collect();
    let mut warnings = Vec::new();
    for (var, _) in vars {
        // Test-suite switches are not settings and not typos.
        if !var.starts_with("GATEHOUSE_")
            || var.starts_with("GATEHOUSE_TEST_")
            || known.contains(&var)
        {
            continue;
        }
        let closest = known
            .iter()
            .map(|k| (edit_distance(&var, k), k))
            .min()
            .filter(|(d, _)| *d <= 3);
        warnings.push(match closest {
            Some((_, k)) => format!("warning: unknown environment variable {var} (ignored); did you mean {k}?"),
            None => format!("warning: unknown environment variable {var} (ignored); `gatehouse check-config` lists the settings"),
        });
    }
    warnings
}

/// Levenshtein distance between two short ASCII names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

impl Layers {
    /// Starts from nothing (defaults apply to what no layer sets).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TOML file's settings.
    ///
    /// # Errors
    ///
    /// An unreadable file, bad TOML, an unknown setting or a value of the
    /// wrong type.
    pub fn file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let file_err = |reason: String| ConfigError::File {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
        let source = path.display().to_string();
        let mut entries = Vec::new();
        for (key, value) in table {
            match value {
                toml::Value::Array(items) if key == "apps" => {
                    for item in items {
                        let spec: AppSpec = item
                            .try_into()
                            .map_err(|e: toml::de::Error| file_err(format!("in [[apps]]: {e}")))?;
                        self.apps.push(spec);
                    }
                }
                toml::Value::Array(items) if key == "clients" => {
                    for (n, item) in items.into_iter().enumerate() {
                        let spec: ClientSpec = item.try_into().map_err(|e: toml::de::Error| {
                            file_err(format!("in [[clients]] number {}: {e}", n + 1))
                        })?;
                        self.clients.push(spec);
                    }
                }
                toml::Value::Table(sub) => {
                    for (k, v) in sub {
                        entries.push((format!("{key}.{k}"), v));
                    }
                }
                v => entries.push((key, v)),
            }
        }
        for (key, value) in entries {
            let setting = find(&key).ok_or_else(|| file_err(format!("unknown setting `{key}`")))?;
            let raw = match value {
                toml::Value::String(s) => Raw::One(s),
                toml::Value::Integer(i) => Raw::One(i.to_string()),
                toml::Value::Boolean(b) => Raw::One(b.to_string()),
                toml::Value::Array(items) => Raw::List(
                    items
                        .into_iter()
                        .map(|i| match i {
                            toml::Value::String(s) => Ok(s),
                            other => Err(file_err(format!(
                                "`{key}` must be a list of strings, found {other}"
                            ))),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => {
                    return Err(file_err(format!(
                        "`{key}` has an unsupported value {other}"
                    )));
                }
            };
            self.values.insert(
                setting.name,
                Value {
                    raw,
                    source: source.clone(),
                },
            );
        }
        Ok(())
    }

    /// Adds settings from environment variables (`GATEHOUSE_*`); list
    /// settings are comma-separated there.
    pub fn env(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        for setting in SETTINGS {
            let var = setting.env();
            if let Some(v) = vars.get(&var) {
                self.values.insert(
                    setting.name,
                    Value {
                        raw: Raw::One(v.clone()),
                        source: format!("${var}"),
                    },
                );
            }
        }
    }

    /// Adds a command-line flag's value.
    ///
    /// # Panics
    ///
    /// When `name` is not a setting: flags are fixed at compile time.
    pub fn flag(&mut self, name: &str, value: String) {
        let setting = find(name).expect("flags name real settings");
        self.values.insert(
            setting.name,
            Value {
                raw: Raw::One(value),
                source: format!("--{}", setting.name.replace('_', "-")),
            },
        );
    }

    /// The text a setting has in the highest layer that sets it, and that
    /// layer's name.
    fn get(&self, setting: &Setting) -> (Raw, String) {
        match self.values.get(setting.name) {
            Some(v) => (v.raw.clone(), v.source.clone()),
            None => (Raw::One(setting.default_text()), "the default".to_owned()),
        }
    }

    /// Runs one row's parser on its text.
    fn apply(&self, setting: &Setting, draft: &mut Draft) -> Result<(), ConfigError> {
        let (raw, source) = self.get(setting);
        let invalid = |reason: String| ConfigError::Invalid {
            setting: setting.name.to_owned(),
            origin: source.clone(),
            reason,
        };
        match (&setting.set, raw) {
            (Set::One(set), Raw::One(text)) => set(draft, text.trim()).map_err(invalid),
            // A list where one value is expected was joined with commas and
            // could pass as one odd value; say so instead.
            (Set::One(_), Raw::List(_)) => Err(invalid("takes one value, not a list".to_owned())),
            (Set::List(set), raw) => {
                let items: Vec<String> = match raw {
                    Raw::One(s) => s.split(',').map(str::to_owned).collect(),
                    Raw::List(l) => l,
                };
                let items: Vec<&str> = items
                    .iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .collect();
                set(draft, &items).map_err(invalid)
            }
        }
    }

    fn apps(&self, default: Access) -> Result<Apps, ConfigError> {
        let to_config = |e: crate::auth::apps::AppConfigError| ConfigError::App {
            app: e.app,
            field: e.field,
            reason: e.reason,
        };
        let apps = self
            .apps
            .iter()
            .map(|spec| spec.build().map_err(to_config))
            .collect::<Result<Vec<_>, _>>()?;
        Apps::new(apps, default).map_err(to_config)
    }

    fn clients(&self) -> Result<Clients, ConfigError> {
        let to_config = |e: crate::oidc::ClientError| ConfigError::Client {
            client: e.client,
            field: e.field,
            reason: e.reason,
        };
        let clients = self
            .clients
            .iter()
            .map(|spec| spec.build().map_err(to_config))
            .collect::<Result<Vec<_>, _>>()?;
        Clients::new(clients).map_err(to_config)
    }

    /// Validates everything into a [`Config`].
    ///
    /// # Errors
    ///
    /// The first setting that is invalid.
    pub fn build(&self, data_dir: PathBuf) -> Result<Config, ConfigError> {
        let mut draft = Draft {
            config: Config::unfilled(data_dir),
            tls_cert: None,
            tls_key: None,
            default_policy: Access::SignedIn,
            ldap: Default::default(),
        };
        for setting in SETTINGS {
            self.apply(setting, &mut draft)?;
        }
        let Draft {
            mut config,
            tls_cert,
            tls_key,
            default_policy,
            ldap,
        } = draft;
        config.apps = self.apps(default_policy)?;
        config.clients = self.clients()?;
        config.ldap = ldap
            .resolve(&config.data_dir)
            .map_err(|r| ConfigError::Invalid {
                setting: r.setting.to_owned(),
                origin: "the combined settings".to_owned(),
                reason: r.reason,
            })?;
        config.tls = tls_files(tls_cert, tls_key, &config.data_dir)?;
        config.check()?;
        Ok(config)
    }
}
