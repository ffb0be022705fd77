//! The trace settings: OpenTelemetry's standard `OTEL_*` variables, read once like every
//! other setting. Traces are on when an OTLP endpoint is given and the SDK is not disabled;
//! the gateway speaks OTLP over HTTP with protobuf bodies only.

use axum::http::Uri;

use super::table::{
    Setting, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_SDK_DISABLED, OTEL_SERVICE_NAME,
};

/// The one OTLP protocol the gateway's exporter speaks.
pub const HTTP_PROTOBUF: &str = "http/protobuf";

/// The path OTLP/HTTP puts after a base endpoint for traces.
const TRACES_PATH: &str = "v1/traces";

/// Where and as whom the gateway exports its spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// The URL spans are POSTed to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` followed by `/v1/traces`.
    pub endpoint: String,
    /// `OTEL_SERVICE_NAME`: the `service.name` of every span.
    pub service_name: String,
}

/// A bad `OTEL_*` value: the variable, the value as given and the rule it breaks (the settings
/// turn it into their one-line error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The environment variable.
    pub variable: &'static str,
    /// The value as given.
    pub value: String,
    /// What a valid value looks like.
    pub rule: String,
}

/// One variable that is set (an empty value counts as unset, as the OpenTelemetry
/// specification says).
struct Given {
    variable: &'static str,
    value: String,
}

impl Given {
    fn invalid(&self, rule: &str) -> Invalid {
        Invalid {
            variable: self.variable,
            value: self.value.clone(),
            rule: rule.to_owned(),
        }
    }

    /// The value, when it is an absolute `http://` or `https://` URL with a host.
    fn http_url(&self, invalid: &mut Vec<Invalid>) -> Option<&str> {
        let rule =
            "must be an http:// or https:// URL such as http://127.0.0.1:4318 (OTLP over HTTP)";
        let value = self.value.trim();
        match value.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.host().is_some_and(|host| !host.is_empty()) =>
            {
                Some(value)
            }
            _ => {
                invalid.push(self.invalid(rule));
                None
            }
        }
    }
}

/// The trace settings through `lookup` (`None` when traces are off), and every bad value.
pub(super) fn traces(
    lookup: &impl Fn(&str) -> Option<String>,
) -> (Option<TraceSettings>, Vec<Invalid>) {
    let mut invalid = Vec::new();
    let given = |setting: Setting| {
        lookup(setting.name)
            .filter(|value| !value.trim().is_empty())
            .map(|value| Given {
                variable: setting.name,
                value,
            })
    };
    let disabled = given(OTEL_SDK_DISABLED).and_then(|raw| {
        match raw.value.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                invalid.push(raw.invalid("must be true or false"));
                None
            }
        }
    });
    if let Some(raw) = given(OTEL_EXPORTER_OTLP_PROTOCOL) {
        if raw.value.trim() != HTTP_PROTOBUF {
            invalid.push(raw.invalid(&format!(
                "must be {HTTP_PROTOBUF}: the gateway exports over OTLP/HTTP with protobuf bodies only (port 4318 of an OpenTelemetry Collector, not gRPC's 4317)"
            )));
        }
    }
    let service_name = given(OTEL_SERVICE_NAME).map_or_else(
        || OTEL_SERVICE_NAME.default.unwrap_or_default().to_owned(),
        |raw| raw.value.trim().to_owned(),
    );
    let traces_endpoint = given(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
        .and_then(|raw| raw.http_url(&mut invalid).map(str::to_owned));
    let base_endpoint = given(OTEL_EXPORTER_OTLP_ENDPOINT)
        .and_then(|raw| raw.http_url(&mut invalid).map(traces_url));
    let settings = match disabled {
        Some(true) => None,
        _ => traces_endpoint
            .or(base_endpoint)
            .map(|endpoint| TraceSettings {
                endpoint,
                service_name,
            }),
    };
    (settings, invalid)
}

/// The traces URL under a base endpoint: `http://collector:4318` becomes
/// `http://collector:4318/v1/traces`.
fn traces_url(base: &str) -> String {
    format!("{}/{TRACES_PATH}", base.trim().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(variables: &[(&str, &str)]) -> (Option<TraceSettings>, Vec<Invalid>) {
        let map: HashMap<String, String> = variables
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        traces(&|name: &str| map.get(name).cloned())
    }

    #[test]
    fn traces_are_off_without_an_endpoint() {
        assert_eq!(read(&[]), (None, Vec::new()));
        assert_eq!(read(&[("OTEL_SERVICE_NAME", "gw")]), (None, Vec::new()));
        assert_eq!(
            read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]),
            (None, Vec::new())
        );
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path() {
        let (settings, errors) = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            settings,
            Some(TraceSettings {
                endpoint: "http://collector:4318/v1/traces".to_owned(),
                service_name: "openim-gateway".to_owned(),
            })
        );
    }

    #[test]
    fn the_traces_endpoint_is_used_as_given_and_wins() {
        let (settings, errors) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example:443/otlp/spans",
            ),
            ("OTEL_SERVICE_NAME", "gateway-eu"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            settings,
            Some(TraceSettings {
                endpoint: "https://traces.example:443/otlp/spans".to_owned(),
                service_name: "gateway-eu".to_owned(),
            })
        );
    }

    #[test]
    fn the_sdk_can_be_disabled() {
        for disabled in ["true", "TRUE", " True "] {
            let (settings, errors) = read(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_SDK_DISABLED", disabled),
            ]);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(settings, None, "{disabled}");
        }
        let (settings, _) = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "false"),
        ]);
        assert!(settings.is_some());
    }

    #[test]
    fn bad_values_name_the_variable_the_value_and_the_rule() {
        let cases = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "http://"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "grpc://collector:4317",
                "http://",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://", "http://"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "http/protobuf"),
            ("OTEL_SDK_DISABLED", "yes", "true or false"),
        ];
        for (name, value, rule) in cases {
            let (_, errors) = read(&[(name, value)]);
            assert_eq!(errors.len(), 1, "{name}={value}: {errors:?}");
            assert_eq!(errors[0].variable, name);
            assert_eq!(errors[0].value, value);
            assert!(errors[0].rule.contains(rule), "{:?}", errors[0].rule);
            assert!(!errors[0].rule.contains('\n'));
        }
    }
}
