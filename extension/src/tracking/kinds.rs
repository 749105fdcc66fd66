//! What each kind of tracked table fires and sends: the event rules (which change fires which
//! event, in the order of the event reference) and the payload's fields. The prose version is
//! docs/ats-events.md; `webhooks.table_kinds` holds the same column lists for `track()`'s checks
//! (a pg_test keeps the two in step).

use super::change::Change;

/// Where a payload field's value comes from.
pub enum Source {
    /// `to_jsonb(NEW.column)`.
    Column(&'static str),
    /// `webhooks.iso8601(NEW.column)`: a UTC timestamp string, or null.
    Time(&'static str),
    /// `{id, name, email}` of the row of the candidates table whose id is NEW.candidate_id.
    Candidate,
    /// `{id, title}` of the row of the job postings table whose id is NEW.job_posting_id.
    JobPosting,
}

pub struct Kind {
    pub name: &'static str,
    /// Every event its rules can fire, in the order of the event reference
    /// (`webhooks.table_kinds.events`; a pg_test keeps the two in step, and a debug build checks
    /// every event fired against this list).
    pub events: &'static [&'static str],
    /// Every column the rules and the payload read (`webhooks.table_kinds.required_columns`).
    pub columns: &'static [&'static str],
    /// Columns the rules read as booleans, and columns sent as timestamps: track() checks
    /// their types so that a write never fails on them.
    pub booleans: &'static [&'static str],
    pub payload: &'static [(&'static str, Source)],
    /// The events a change fires, in order.
    pub rules: fn(&Change, &mut Vec<&'static str>),
}

impl Kind {
    pub fn needs_people(&self) -> bool {
        self.payload
            .iter()
            .any(|(_, source)| matches!(source, Source::Candidate | Source::JobPosting))
    }

    pub fn times(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.payload.iter().filter_map(|(_, source)| match source {
            Source::Time(column) => Some(*column),
            _ => None,
        })
    }
}

pub fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|kind| kind.name == name)
}

/// The event named `prefix` + NEW.status, when the status is one of `statuses`.
fn by_status(
    change: &Change,
    events: &'static [(&'static str, &'static str)],
) -> Option<&'static str> {
    let status = change.new_text("status")?;
    events
        .iter()
        .find(|(s, _)| *s == status.as_str())
        .map(|(_, event)| *event)
}

use Source::{Candidate, Column, JobPosting, Time};

pub static KINDS: [Kind; 8] = [
    Kind {
        name: "applications",
        events: &[
            "application.submitted",
            "application.rejected",
            "application.advanced",
            "application.withdrawn",
            "application.offer_extended",
        ],
        columns: &[
            "id",
            "candidate_id",
            "job_posting_id",
            "current_stage",
            "submitted_at",
            "rejected",
            "withdrawn",
            "offered",
        ],
        booleans: &["rejected", "withdrawn", "offered"],
        payload: &[
            ("id", Column("id")),
            ("candidate", Candidate),
            ("job_posting", JobPosting),
            ("current_stage", Column("current_stage")),
            ("submitted_at", Time("submitted_at")),
            ("rejected", Column("rejected")),
            ("withdrawn", Column("withdrawn")),
            ("offered", Column("offered")),
        ],
        rules: |c, fire| {
            if c.became_set("submitted_at") {
                fire.push("application.submitted");
            }
            if c.became_true("rejected") {
                fire.push("application.rejected");
            }
            if c.is_update() && c.changed("current_stage") {
                fire.push("application.advanced");
            }
            if c.became_true("withdrawn") {
                fire.push("application.withdrawn");
            }
            if c.became_true("offered") {
                fire.push("application.offer_extended");
            }
        },
    },
    Kind {
        name: "offers",
        events: &[
            "offer.accepted",
            "offer.declined",
            "offer.candidate_accepted",
            "offer.candidate_declined",
            "offer.revised",
        ],
        columns: &[
            "id",
            "candidate_id",
            "job_posting_id",
            "status",
            "details",
            "extended_at",
            "expires_at",
            "accepted_at",
            "declined_at",
        ],
        booleans: &[],
        payload: &[
            ("id", Column("id")),
            ("status", Column("status")),
            ("details", Column("details")),
            ("extended_at", Time("extended_at")),
            ("expires_at", Time("expires_at")),
            ("accepted_at", Time("accepted_at")),
            ("declined_at", Time("declined_at")),
            ("candidate", Candidate),
            ("job_posting", JobPosting),
        ],
        rules: |c, fire| {
            if c.changed("status") {
                fire.extend(by_status(
                    c,
                    &[
                        ("accepted", "offer.accepted"),
                        ("declined", "offer.declined"),
                        ("candidate_accepted", "offer.candidate_accepted"),
                        ("candidate_declined", "offer.candidate_declined"),
                    ],
                ));
            }
            if c.is_update() && (c.changed("details") || c.changed("expires_at")) {
                fire.push("offer.revised");
            }
        },
    },
    Kind {
        name: "interviews",
        events: &[
            "interview.scheduled",
            "interview.confirmed",
            "interview.completed",
            "interview.cancelled",
            "interview.no_show",
        ],
        columns: &[
            "id",
            "candidate_id",
            "job_posting_id",
            "status",
            "scheduled_at",
            "duration_minutes",
        ],
        booleans: &[],
        payload: &[
            ("id", Column("id")),
            ("status", Column("status")),
            ("scheduled_at", Time("scheduled_at")),
            ("duration_minutes", Column("duration_minutes")),
            ("candidate", Candidate),
            ("job_posting", JobPosting),
        ],
        rules: |c, fire| {
            const BY_STATUS: &[(&str, &str)] = &[
                ("scheduled", "interview.scheduled"),
                ("confirmed", "interview.confirmed"),
                ("completed", "interview.completed"),
                ("cancelled", "interview.cancelled"),
                ("no_show", "interview.no_show"),
            ];
            match by_status(c, BY_STATUS) {
                Some(event) if c.changed("status") => fire.push(event),
                // Moved to another time while still ahead: scheduled again.
                Some("interview.scheduled" | "interview.confirmed")
                    if c.unchanged("status") && c.changed("scheduled_at") =>
                {
                    fire.push("interview.scheduled")
                }
                _ => {}
            }
        },
    },
    Kind {
        name: "code_assignments",
        events: &[
            "code_assignment.submitted",
            "code_assignment.auto_submitted",
        ],
        columns: &[
            "id",
            "candidate_id",
            "job_posting_id",
            "repo_url",
            "submitted_at",
            "deadline_at",
            "auto_submitted",
        ],
        booleans: &["auto_submitted"],
        payload: &[
            ("id", Column("id")),
            ("repo_url", Column("repo_url")),
            ("submitted_at", Time("submitted_at")),
            ("deadline_at", Time("deadline_at")),
            ("candidate", Candidate),
            ("job_posting", JobPosting),
        ],
        rules: |c, fire| {
            if c.became_set("submitted_at") {
                fire.push(if c.new_is_true("auto_submitted") {
                    "code_assignment.auto_submitted"
                } else {
                    "code_assignment.submitted"
                });
            }
        },
    },
    Kind {
        name: "reviews",
        events: &["review.submitted"],
        columns: &[
            "id",
            "candidate_id",
            "job_posting_id",
            "recommendation",
            "reviewer",
            "stage",
        ],
        booleans: &[],
        payload: &[
            ("id", Column("id")),
            ("recommendation", Column("recommendation")),
            ("reviewer", Column("reviewer")),
            ("candidate", Candidate),
            ("job_posting", JobPosting),
            ("stage", Column("stage")),
        ],
        rules: |c, fire| {
            if !c.is_update() {
                fire.push("review.submitted");
            }
        },
    },
    Kind {
        name: "job_postings",
        events: &[
            "job_posting.published",
            "job_posting.paused",
            "job_posting.closed",
            "job_posting.reopened",
        ],
        columns: &[
            "id",
            "title",
            "status",
            "location",
            "department",
            "employment_type",
            "published_at",
            "closed_at",
            "public_url",
        ],
        booleans: &[],
        payload: &[
            ("id", Column("id")),
            ("title", Column("title")),
            ("status", Column("status")),
            ("location", Column("location")),
            ("department", Column("department")),
            ("employment_type", Column("employment_type")),
            ("published_at", Time("published_at")),
            ("closed_at", Time("closed_at")),
            ("public_url", Column("public_url")),
        ],
        rules: |c, fire| {
            if !c.changed("status") {
                return;
            }
            match c.new_text("status").as_deref() {
                Some("published") if c.old_text("status").as_deref() == Some("closed") => {
                    fire.push("job_posting.reopened")
                }
                Some("published") => fire.push("job_posting.published"),
                Some("paused") => fire.push("job_posting.paused"),
                Some("closed") => fire.push("job_posting.closed"),
                _ => {}
            }
        },
    },
    Kind {
        name: "outreach_prospects",
        events: &["outreach.prospect.drafted"],
        columns: &[
            "id",
            "campaign_id",
            "company_name",
            "display_name",
            "status",
        ],
        booleans: &[],
        // The prospect's email is never included (encrypted at rest in Kit).
        payload: &[
            ("id", Column("id")),
            ("campaign_id", Column("campaign_id")),
            ("company_name", Column("company_name")),
            ("display_name", Column("display_name")),
            ("status", Column("status")),
        ],
        rules: |c, fire| {
            if c.changed("status") {
                fire.extend(by_status(c, &[("drafted", "outreach.prospect.drafted")]));
            }
        },
    },
    Kind {
        name: "outreach_messages",
        events: &[
            "outreach.message.approved",
            "outreach.message.sent",
            "outreach.message.bounced",
            "outreach.message.failed",
        ],
        columns: &[
            "id",
            "campaign_id",
            "prospect_id",
            "step_number",
            "subject",
            "status",
            "sent_at",
            "approved_at",
            "retry_count",
            "last_error_code",
        ],
        booleans: &[],
        // The message body is never included (encrypted at rest in Kit).
        payload: &[
            ("id", Column("id")),
            ("campaign_id", Column("campaign_id")),
            ("prospect_id", Column("prospect_id")),
            ("step_number", Column("step_number")),
            ("subject", Column("subject")),
            ("status", Column("status")),
            ("sent_at", Time("sent_at")),
            ("approved_at", Time("approved_at")),
            ("retry_count", Column("retry_count")),
            ("last_error_code", Column("last_error_code")),
        ],
        rules: |c, fire| {
            if c.changed("status") {
                fire.extend(by_status(
                    c,
                    &[
                        ("approved", "outreach.message.approved"),
                        ("sent", "outreach.message.sent"),
                        ("bounced", "outreach.message.bounced"),
                        ("failed", "outreach.message.failed"),
                    ],
                ));
            }
        },
    },
];
