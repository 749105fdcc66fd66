//! Command-line flags with environment fallbacks; `webhook-relay --help` explains each.

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;

/// Deliver webhook events queued by the pg_webhooks extension.
#[derive(Parser, Debug, Clone)]
#[command(name = "webhook-relay", version, about, long_about = None)]
pub struct Config {
    /// PostgreSQL connection string (key=value or postgres:// URL). The role needs
    /// webhooks_relay.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Address for /healthz (and /metrics); "off" to disable.
    #[arg(
        long,
        env = "WEBHOOK_RELAY_HEALTH_ADDR",
        default_value = "127.0.0.1:9187"
    )]
    pub health_addr: HealthAddr,

    /// Backstop poll interval: an idle relay claims this often even when it notices nothing
    /// new (retries coming due, leases of a crashed relay running out).
    #[arg(long, env = "WEBHOOK_RELAY_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// While there is traffic the relay stays awake and claims this often.
    #[arg(long, env = "WEBHOOK_RELAY_AWAKE_POLL_INTERVAL", default_value = "2ms", value_parser = parse_duration)]
    pub awake_poll_interval: Duration,

    /// How long the relay stays awake after its last delivery (or the last sign of new work)
    /// before it goes idle.
    #[arg(long, env = "WEBHOOK_RELAY_STAY_AWAKE", default_value = "1s", value_parser = parse_duration)]
    pub stay_awake: Duration,

    /// While idle, how often the relay reads how far the event log and the deliveries have come
    /// (`webhooks.work_marker()`, two sequence reads) to notice new work: writers never notify.
    #[arg(long, env = "WEBHOOK_RELAY_IDLE_POLL_INTERVAL", default_value = "5ms", value_parser = parse_duration)]
    pub idle_poll_interval: Duration,

    /// How often the relay runs retention (`webhooks.maintain()`: partitions made ahead, those
    /// past their retention dropped); 0 to leave it to pg_cron or an operator.
    #[arg(long, env = "WEBHOOK_RELAY_MAINTENANCE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub maintenance_interval: Duration,

    /// Longest wait between reconnection attempts when the database is unreachable.
    #[arg(long, env = "WEBHOOK_RELAY_MAX_RECONNECT_DELAY", default_value = "10s", value_parser = parse_duration)]
    pub max_reconnect_delay: Duration,

    /// Name this relay records in deliveries it leases (default: host name and process id).
    #[arg(long, env = "WEBHOOK_RELAY_ID")]
    pub relay_id: Option<String>,

    /// Most requests on the wire at once, over all endpoints. The relay holds up to this plus
    /// --batch-size deliveries: those on the wire and a batch claimed ahead.
    #[arg(long, env = "WEBHOOK_RELAY_CONCURRENCY", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Most deliveries claimed per database round trip.
    #[arg(long, env = "WEBHOOK_RELAY_BATCH_SIZE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,

    /// Most deliveries this relay holds for any one endpoint (on the wire or waiting for a
    /// request slot), so that a slow receiver does not get the whole batch at once.
    #[arg(long, env = "WEBHOOK_RELAY_PER_ENDPOINT", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_in_flight_per_endpoint: u32,

    /// Lease (visibility timeout) on claimed deliveries: if this relay dies, another relay
    /// sends them once it runs out. Must exceed the request timeout.
    #[arg(long, env = "WEBHOOK_RELAY_LEASE", default_value = "60s", value_parser = parse_duration)]
    pub lease: Duration,

    /// Time allowed for a whole exchange (connect, TLS, request, response); longer counts as
    /// a timeout and is retried.
    #[arg(long, env = "WEBHOOK_RELAY_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Extra PEM file of CA certificates to trust besides the public web roots (for receivers
    /// with a private or self-signed CA).
    #[arg(long, env = "WEBHOOK_RELAY_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,

    /// Networks the relay may deliver to besides public addresses, e.g. 10.0.0.0/8 (repeat the
    /// flag or separate with commas). Everything else that is not globally routable —
    /// loopback, private, link-local, CGNAT, multicast, … — is refused (SSRF guard).
    #[arg(
        long = "allow-network",
        env = "WEBHOOK_RELAY_ALLOW_NETWORKS",
        value_delimiter = ','
    )]
    pub allow_networks: Vec<crate::guard::Network>,

    /// User-Agent header sent with every delivery.
    #[arg(
        long,
        env = "WEBHOOK_RELAY_USER_AGENT",
        default_value = "Kit-Webhooks/1.0"
    )]
    pub user_agent: String,

    /// On SIGINT/SIGTERM, how long requests already on the wire may take to finish; whatever
    /// has not started is handed back to the queue at once.
    #[arg(long, env = "WEBHOOK_RELAY_SHUTDOWN_GRACE", default_value = "15s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

/// Where the health server listens, if anywhere.
#[derive(Debug, Clone, Copy)]
pub struct HealthAddr(pub Option<SocketAddr>);

impl std::str::FromStr for HealthAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(HealthAddr(None));
        }
        s.parse()
            .map(|a| HealthAddr(Some(a)))
            .map_err(|e| format!("\"{s}\" is not an address like 127.0.0.1:9187 or \"off\": {e}"))
    }
}

/// Parse "250ms", "5s", "2m" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration such as 250ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "\"{s}\": unknown unit \"{unit}\"; use ms, s, m or h"
            ))
        }
    };
    if !(0.0..=86_400.0 * 7.0).contains(&seconds) {
        return Err(format!("\"{s}\" is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl Config {
    /// Checks that involve more than one flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease > Duration::from_secs(3600) {
            return Err(format!(
                "--lease ({:?}) must be at most 1h: the database refuses longer leases (webhooks.max_lease())",
                self.lease
            ));
        }
        if self.lease < self.request_timeout + Duration::from_secs(5) {
            return Err(format!(
                "--lease ({:?}) must be at least 5s longer than --request-timeout ({:?}), or another relay could send a delivery that is still in flight",
                self.lease, self.request_timeout
            ));
        }
        if hyper::header::HeaderValue::from_str(&self.user_agent).is_err() {
            return Err(format!(
                "--user-agent \"{}\" cannot be sent as a header: use visible ASCII characters",
                self.user_agent
            ));
        }
        if self.request_timeout.is_zero()
            || self.poll_interval.is_zero()
            || self.awake_poll_interval.is_zero()
            || self.idle_poll_interval.is_zero()
        {
            return Err(
                "--request-timeout, --poll-interval, --awake-poll-interval and --idle-poll-interval must be greater than zero"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn relay_id(&self) -> String {
        self.relay_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "relay".into());
            format!("{host}:{}", std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn health_addr_can_be_off() {
        assert!("off".parse::<HealthAddr>().unwrap().0.is_none());
        assert!("127.0.0.1:0".parse::<HealthAddr>().unwrap().0.is_some());
        assert!("nonsense".parse::<HealthAddr>().is_err());
    }

    #[test]
    fn a_user_agent_that_cannot_be_a_header_is_refused_at_start() {
        let config = |agent: &str| {
            Config::try_parse_from([
                "webhook-relay",
                "--database-url",
                "x",
                "--user-agent",
                agent,
            ])
            .unwrap()
        };
        assert!(config("Kit-Webhooks/1.0").validate().is_ok());
        let refused = config("bad\nagent").validate().unwrap_err();
        assert!(refused.contains("--user-agent"), "{refused}");
    }
}
