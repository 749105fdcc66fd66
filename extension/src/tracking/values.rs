//! Column values as payload JSON: what `to_jsonb(value)` and `webhooks.iso8601(value)` give,
//! computed without a query. Common types are converted directly; any other type goes through
//! PostgreSQL's own `to_jsonb`, so every type converts exactly as SQL would convert it.

use pgrx::pg_sys::{self, Datum, JsonbValue, Oid};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

thread_local! {
    /// `to_jsonb` set up for one argument type, in TopMemoryContext (for the backend's life).
    static TO_JSONB: RefCell<HashMap<Oid, *mut pg_sys::FmgrInfo>> = RefCell::new(HashMap::new());
}

/// A text-like value's bytes, detoasted (in the current memory context if it had to be).
unsafe fn text_bytes<'a>(datum: Datum) -> &'a [u8] {
    use pgrx::varlena::{varatt_is_1b, varatt_is_1b_e, varatt_is_4b_u};
    let mut text = datum.cast_mut_ptr::<pg_sys::varlena>();
    // What pg_detoast_datum_packed checks, without a call into PostgreSQL for the usual
    // case: a short value stored inline and uncompressed is read where it is.
    let in_place = varatt_is_4b_u(text) || (varatt_is_1b(text) && !varatt_is_1b_e(text));
    if !in_place {
        text = pg_sys::pg_detoast_datum_packed(text);
    }
    pgrx::varlena::varlena_to_byte_slice(text)
}

/// `value::text`.
pub unsafe fn to_text(datum: Datum, type_oid: Oid) -> String {
    if type_oid == pg_sys::TEXTOID || type_oid == pg_sys::VARCHAROID {
        return String::from_utf8_lossy(text_bytes(datum)).into_owned();
    }
    let mut output = pg_sys::InvalidOid;
    let mut is_varlena = false;
    pg_sys::getTypeOutputInfo(type_oid, &mut output, &mut is_varlena);
    let text = pg_sys::OidOutputFunctionCall(output, datum);
    CStr::from_ptr(text).to_string_lossy().into_owned()
}

pub fn null() -> JsonbValue {
    JsonbValue {
        type_: pg_sys::jbvType::jbvNull,
        val: pg_sys::JsonbValue__bindgen_ty_1 { boolean: false },
    }
}

/// A JSON string holding `bytes`, which must outlive the payload's construction.
pub fn string(bytes: &[u8]) -> JsonbValue {
    JsonbValue {
        type_: pg_sys::jbvType::jbvString,
        val: pg_sys::JsonbValue__bindgen_ty_1 {
            string: pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
                len: bytes.len() as i32,
                val: bytes.as_ptr() as *mut _,
            },
        },
    }
}

/// A JSON string copied into the current memory context.
pub unsafe fn owned_string(text: &str) -> JsonbValue {
    let copy = pg_sys::pnstrdup(text.as_ptr() as *const _, text.len());
    string(std::slice::from_raw_parts(copy as *const u8, text.len()))
}

/// A stored jsonb value, embedded as it is.
unsafe fn binary(jsonb: Datum) -> JsonbValue {
    let jsonb = pg_sys::pg_detoast_datum(jsonb.cast_mut_ptr()) as *mut pg_sys::Jsonb;
    JsonbValue {
        type_: pg_sys::jbvType::jbvBinary,
        val: pg_sys::JsonbValue__bindgen_ty_1 {
            binary: pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_4 {
                len: pgrx::varlena::varsize_any(jsonb as *const _) as i32,
                data: &mut (*jsonb).root,
            },
        },
    }
}

/// `to_jsonb(value)` for a column of type `type_oid`.
pub unsafe fn to_jsonb(value: Option<Datum>, type_oid: Oid) -> JsonbValue {
    let Some(datum) = value else { return null() };
    match type_oid {
        pg_sys::BOOLOID => JsonbValue {
            type_: pg_sys::jbvType::jbvBool,
            val: pg_sys::JsonbValue__bindgen_ty_1 {
                boolean: datum.value() != 0,
            },
        },
        pg_sys::INT2OID | pg_sys::INT4OID | pg_sys::INT8OID => {
            let number = match type_oid {
                pg_sys::INT2OID => datum.value() as i16 as i64,
                pg_sys::INT4OID => datum.value() as i32 as i64,
                _ => datum.value() as i64,
            };
            JsonbValue {
                type_: pg_sys::jbvType::jbvNumeric,
                val: pg_sys::JsonbValue__bindgen_ty_1 {
                    numeric: pg_sys::int64_to_numeric(number),
                },
            }
        }
        pg_sys::TEXTOID | pg_sys::VARCHAROID => string(text_bytes(datum)),
        pg_sys::JSONBOID => binary(datum),
        _ => binary(sql_to_jsonb(datum, type_oid)),
    }
}

/// PostgreSQL's `to_jsonb`, which reads its argument's type from the call expression.
unsafe fn sql_to_jsonb(datum: Datum, type_oid: Oid) -> Datum {
    let flinfo = TO_JSONB.with_borrow_mut(|cache| {
        *cache.entry(type_oid).or_insert_with(|| {
            let context = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
            let flinfo =
                pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()) as *mut pg_sys::FmgrInfo;
            let function = Oid::from(pg_sys::F_TO_JSONB);
            pg_sys::fmgr_info(function, flinfo);
            let argument = pg_sys::makeNullConst(type_oid, -1, pg_sys::InvalidOid);
            let call = pg_sys::makeFuncExpr(
                function,
                pg_sys::JSONBOID,
                pg_sys::list_make1_impl(
                    pg_sys::NodeTag::T_List,
                    pg_sys::ListCell {
                        ptr_value: argument as *mut _,
                    },
                ),
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
            );
            (*flinfo).fn_expr = call as *mut pg_sys::Node;
            pg_sys::MemoryContextSwitchTo(context);
            flinfo
        })
    });
    pg_sys::FunctionCall1Coll(flinfo, pg_sys::InvalidOid, datum)
}

/// `webhooks.iso8601(value)`: `YYYY-MM-DDTHH:MM:SSZ` in UTC, or None where to_char gives
/// NULL (infinity). A timestamp without time zone or a date is read in the session's time
/// zone, as the cast to timestamptz reads it.
pub unsafe fn iso8601(datum: Datum, type_oid: Oid) -> Option<String> {
    let base = match type_oid {
        pg_sys::TIMESTAMPTZOID | pg_sys::TIMESTAMPOID | pg_sys::DATEOID => type_oid,
        _ => pg_sys::getBaseType(type_oid),
    };
    let instant = match base {
        pg_sys::TIMESTAMPOID => pgrx::direct_function_call::<pg_sys::Datum>(
            pg_sys::timestamp_timestamptz,
            &[Some(datum)],
        ),
        pg_sys::DATEOID => {
            pgrx::direct_function_call::<pg_sys::Datum>(pg_sys::date_timestamptz, &[Some(datum)])
        }
        _ => Some(datum),
    }?;
    let mut tm: pg_sys::pg_tm = std::mem::zeroed();
    let mut fsec: pg_sys::fsec_t = 0;
    let instant = instant.value() as i64;
    if instant == i64::MIN
        || instant == i64::MAX
        || pg_sys::timestamp2tm(
            instant,
            std::ptr::null_mut(),
            &mut tm,
            &mut fsec,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ) != 0
    {
        return None;
    }
    // to_char's YYYY: years BC count from 1 without a sign; more digits past 9999.
    let year = if tm.tm_year > 0 {
        tm.tm_year
    } else {
        1 - tm.tm_year
    } as u32;
    let mut text = String::with_capacity(24);
    if year > 9999 {
        text.push_str(&year.to_string());
    } else {
        push_digits(&mut text, year, 4);
    }
    for (separator, value) in [
        ('-', tm.tm_mon),
        ('-', tm.tm_mday),
        ('T', tm.tm_hour),
        (':', tm.tm_min),
        (':', tm.tm_sec),
    ] {
        text.push(separator);
        push_digits(&mut text, value as u32, 2);
    }
    text.push('Z');
    Some(text)
}

/// `value` in `width` decimal digits, zero-padded: format! cost more than the rest of iso8601
/// together.
fn push_digits(text: &mut String, value: u32, width: u32) {
    for power in (0..width).rev() {
        text.push(char::from(b'0' + (value / 10u32.pow(power) % 10) as u8));
    }
}

/// A JSON object of `fields`, whose keys must be in jsonb's order (shorter first, then
/// bytewise) and distinct, as a serialised jsonb object keeps them. The pairs live in the
/// current memory context.
pub unsafe fn object(fields: &[(&'static str, JsonbValue)]) -> JsonbValue {
    let pairs = pg_sys::palloc(fields.len() * std::mem::size_of::<pg_sys::JsonbPair>())
        as *mut pg_sys::JsonbPair;
    for (i, (key, value)) in fields.iter().enumerate() {
        debug_assert!(i == 0 || (fields[i - 1].0.len(), fields[i - 1].0) < (key.len(), *key));
        pairs.add(i).write(pg_sys::JsonbPair {
            key: string(key.as_bytes()),
            value: *value,
            order: i as u32,
        });
    }
    JsonbValue {
        type_: pg_sys::jbvType::jbvObject,
        val: pg_sys::JsonbValue__bindgen_ty_1 {
            object: pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_3 {
                nPairs: fields.len() as i32,
                pairs,
            },
        },
    }
}

unsafe fn pairs<'a>(object: &JsonbValue) -> &'a mut [pg_sys::JsonbPair] {
    let object = object.val.object;
    std::slice::from_raw_parts_mut(object.pairs, object.nPairs as usize)
}

/// Whether a tree of values built here holds stored jsonb, which only `push` can serialise.
pub unsafe fn holds_binary(value: &JsonbValue) -> bool {
    match value.type_ {
        pg_sys::jbvType::jbvBinary => true,
        pg_sys::jbvType::jbvObject => pairs(value).iter().any(|pair| holds_binary(&pair.value)),
        _ => false,
    }
}

/// Feed a tree of values to jsonb's parser as `token`; returns what the parser returns.
pub unsafe fn push(
    state: *mut *mut pg_sys::JsonbParseState,
    token: pg_sys::JsonbIteratorToken::Type,
    value: &mut JsonbValue,
) -> *mut JsonbValue {
    use pg_sys::JsonbIteratorToken::*;
    if value.type_ != pg_sys::jbvType::jbvObject {
        return pg_sys::pushJsonbValue(state, token, value);
    }
    pg_sys::pushJsonbValue(state, WJB_BEGIN_OBJECT, std::ptr::null_mut());
    for pair in pairs(value) {
        pg_sys::pushJsonbValue(state, WJB_KEY, &mut pair.key);
        push(state, WJB_VALUE, &mut pair.value);
    }
    pg_sys::pushJsonbValue(state, WJB_END_OBJECT, std::ptr::null_mut())
}
