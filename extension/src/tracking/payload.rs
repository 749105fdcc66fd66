//! A change's payload: the kind's fields, built as one tree of jsonb values in memory and
//! serialised once (what the SQL version's `jsonb_build_object(...)` gave, without evaluating
//! an expression tree or feeding jsonb's parser key by key).

use super::change::Change;
use super::kinds::Source;
use super::{people, values};
use pgrx::pg_sys::{self, JsonbIteratorToken::WJB_VALUE, Oid};
use std::sync::OnceLock;

/// Each kind's payload fields in jsonb's key order (shorter keys first, then bytewise). jsonb
/// sorts an object's keys when it is finished; keys pushed in that order make the sort a
/// single pass over sorted input instead of a real sort.
fn in_jsonb_order(kind: &super::kinds::Kind) -> &'static [usize] {
    static ORDERS: OnceLock<Vec<Vec<usize>>> = OnceLock::new();
    let orders = ORDERS.get_or_init(|| {
        super::kinds::KINDS
            .iter()
            .map(|kind| {
                let mut order: Vec<usize> = (0..kind.payload.len()).collect();
                order.sort_by_key(|&i| (kind.payload[i].0.len(), kind.payload[i].0));
                order
            })
            .collect()
    });
    let position = super::kinds::KINDS
        .iter()
        .position(|k| std::ptr::eq(k, kind))
        .expect("a kind of KINDS");
    &orders[position]
}

/// The tables a payload's candidate and job posting are read from.
#[derive(Clone, Copy)]
pub struct People {
    pub candidates: Oid,
    pub job_postings: Oid,
}

pub unsafe fn build(
    change: &Change,
    people: &People,
    snapshot: pg_sys::Snapshot,
) -> *mut pg_sys::Jsonb {
    let order = in_jsonb_order(change.kind);
    let mut fields = Vec::with_capacity(order.len());
    for &field in order {
        let (key, source) = &change.kind.payload[field];
        let reference = |column: &str| {
            change
                .new_value(column)
                .map(|id| (id, change.type_of(column).0))
        };
        let value = match source {
            Source::Column(column) => {
                values::to_jsonb(change.new_value(column), change.type_of(column).0)
            }
            Source::Time(column) => {
                let text = change
                    .new_value(column)
                    .and_then(|datum| values::iso8601(datum, change.type_of(column).0));
                text.map_or_else(values::null, |text| values::owned_string(&text))
            }
            Source::Candidate => people::row(
                people.candidates,
                super::tracked::CANDIDATE_COLUMNS,
                reference("candidate_id"),
                snapshot,
            ),
            Source::JobPosting => people::row(
                people.job_postings,
                super::tracked::JOB_POSTING_COLUMNS,
                reference("job_posting_id"),
                snapshot,
            ),
        };
        fields.push((*key, value));
    }
    let mut object = values::object(&fields);
    if values::holds_binary(&object) {
        // Stored jsonb inside (a jsonb column, or a type converted by to_jsonb): only the
        // parser's push interface can splice it in.
        let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
        let pushed = values::push(&mut state, WJB_VALUE, &mut object);
        return pg_sys::JsonbValueToJsonb(pushed);
    }
    pg_sys::JsonbValueToJsonb(&mut object)
}
