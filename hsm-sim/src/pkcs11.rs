//! The PKCS#11 C ABI: `C_GetFunctionList` hands out the real module's
//! function list with the functions the signer uses replaced by shims. Each
//! shim asks [`crate::scenario`] (safe code) what to do, then forwards to
//! the real module with the caller's arguments untouched. Functions not
//! replaced go straight to the real module.

use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::{Mutex, MutexGuard, OnceLock};

use cryptoki_sys::*;

use crate::scenario;

struct Real {
    _lib: libloading::Library,
    list: CK_FUNCTION_LIST,
}

static REAL: OnceLock<Result<Real, String>> = OnceLock::new();
static OURS: OnceLock<CK_FUNCTION_LIST> = OnceLock::new();

fn real() -> Option<&'static CK_FUNCTION_LIST> {
    REAL.get().and_then(|r| r.as_ref().ok()).map(|r| &r.list)
}

fn load() -> Result<Real, String> {
    let path = scenario::module()?;
    // SAFETY: loading a shared library runs its initialisers; the scenario
    // names a PKCS#11 module, which is made to be loaded this way.
    let lib = unsafe { libloading::Library::new(&path) }
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: every PKCS#11 module exports C_GetFunctionList with this type.
    let get = unsafe {
        lib.get::<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV>(b"C_GetFunctionList\0")
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut ptr: *mut CK_FUNCTION_LIST = null_mut();
    // SAFETY: a valid out-pointer, as the function expects.
    let rv = unsafe { get(&mut ptr) };
    if rv != CKR_OK || ptr.is_null() {
        return Err(format!(
            "{}: C_GetFunctionList returned {rv:#x}",
            path.display()
        ));
    }
    // SAFETY: on success the module gives a pointer to its function list,
    // valid while the library is loaded (we keep it loaded); we copy it.
    let list = unsafe { *ptr };
    Ok(Real { _lib: lib, list })
}

/// The module's entry point.
///
/// # Safety
/// `list` must be a valid pointer to write the function list pointer to
/// (PKCS#11's contract for this function).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    if list.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let real = match REAL.get_or_init(load) {
        Ok(r) => r.list,
        Err(e) => {
            eprintln!("hsm-sim: {e}");
            return CKR_GENERAL_ERROR;
        }
    };
    let ours = OURS.get_or_init(|| {
        let mut l = real;
        l.C_GetFunctionList = Some(C_GetFunctionList);
        l.C_Initialize = Some(initialize);
        l.C_GetSlotList = Some(get_slot_list);
        l.C_GetTokenInfo = Some(get_token_info);
        l.C_OpenSession = Some(open_session);
        l.C_CloseSession = Some(close_session);
        l.C_CloseAllSessions = Some(close_all_sessions);
        l.C_GetSessionInfo = Some(get_session_info);
        l.C_Login = Some(login);
        l.C_FindObjectsInit = Some(find_objects_init);
        l.C_FindObjects = Some(find_objects);
        l.C_FindObjectsFinal = Some(find_objects_final);
        l.C_GetAttributeValue = Some(get_attribute_value);
        l.C_SignInit = Some(sign_init);
        l.C_Sign = Some(sign);
        l.C_EncryptInit = Some(encrypt_init);
        l.C_Encrypt = Some(encrypt);
        l.C_DecryptInit = Some(decrypt_init);
        l.C_Decrypt = Some(decrypt);
        l.C_GenerateKey = Some(generate_key);
        l.C_GenerateKeyPair = Some(generate_key_pair);
        l
    });
    // SAFETY: `list` is non-null and the caller's out-pointer. The list we
    // point it to is 'static; PKCS#11 callers only read it.
    unsafe { *list = std::ptr::from_ref(ours).cast_mut() };
    CKR_OK
}

/// Calls the real module's function, or answers `CKR_FUNCTION_NOT_SUPPORTED`.
macro_rules! forward {
    ($f:ident ( $($a:expr),* $(,)? )) => {
        match real().and_then(|l| l.$f) {
            // SAFETY: the arguments are the caller's, passed on unchanged (or
            // our own valid buffers), to the function of the module the
            // caller meant to call; the PKCS#11 contract is the same.
            Some(f) => unsafe { f($($a),*) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    };
}

// --- sessions and tokens ------------------------------------------------

fn sessions() -> MutexGuard<'static, HashMap<CK_SESSION_HANDLE, CK_SLOT_ID>> {
    static S: OnceLock<Mutex<HashMap<CK_SESSION_HANDLE, CK_SLOT_ID>>> = OnceLock::new();
    S.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn labels() -> MutexGuard<'static, HashMap<CK_SLOT_ID, String>> {
    static L: OnceLock<Mutex<HashMap<CK_SLOT_ID, String>>> = OnceLock::new();
    L.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The label of the token in `slot` (asked of the real module once).
fn slot_label(slot: CK_SLOT_ID) -> Option<String> {
    if let Some(l) = labels().get(&slot) {
        return Some(l.clone());
    }
    let mut info = CK_TOKEN_INFO::default();
    if forward!(C_GetTokenInfo(slot, &mut info)) != CKR_OK {
        return None;
    }
    let label = String::from_utf8_lossy(&info.label).trim_end().to_owned();
    labels().insert(slot, label.clone());
    Some(label)
}

fn session_label(h: CK_SESSION_HANDLE) -> Option<String> {
    let slot = sessions().get(&h).copied()?;
    slot_label(slot)
}

fn close_real(h: CK_SESSION_HANDLE) {
    sessions().remove(&h);
    let _ = forward!(C_CloseSession(h));
}

/// Removal and faults for a call on a session: `Some(rv)` answers it.
fn on_session(function: &'static str, h: CK_SESSION_HANDLE) -> Option<CK_RV> {
    let token = session_label(h);
    if token.as_deref().is_some_and(scenario::removed) {
        close_real(h);
        return Some(CKR_DEVICE_REMOVED);
    }
    let d = scenario::decide(function, token.as_deref());
    if d.close_session {
        close_real(h);
        return Some(d.rv.unwrap_or(CKR_SESSION_HANDLE_INVALID));
    }
    d.rv
}

// --- the shims --------------------------------------------------------------

unsafe extern "C" fn initialize(args: *mut c_void) -> CK_RV {
    if let Some(rv) = scenario::decide("C_Initialize", None).rv {
        return rv;
    }
    forward!(C_Initialize(args))
}

unsafe extern "C" fn get_slot_list(
    present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    if let Some(rv) = scenario::decide("C_GetSlotList", None).rv {
        return rv;
    }
    if count.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let mut n: CK_ULONG = 0;
    let rv = forward!(C_GetSlotList(present, null_mut(), &mut n));
    if rv != CKR_OK {
        return rv;
    }
    let mut all: Vec<CK_SLOT_ID> = vec![0; usize::try_from(n).unwrap_or(0)];
    let rv = forward!(C_GetSlotList(present, all.as_mut_ptr(), &mut n));
    if rv != CKR_OK {
        return rv;
    }
    all.truncate(usize::try_from(n).unwrap_or(0));
    let visible: Vec<CK_SLOT_ID> = if present == CK_TRUE {
        all.into_iter()
            .filter(|s| !slot_label(*s).is_some_and(|l| scenario::removed(&l)))
            .collect()
    } else {
        all
    };
    // SAFETY: `count` is non-null (checked) and the caller's in/out length.
    let room = unsafe { *count };
    let len = CK_ULONG::try_from(visible.len()).unwrap_or(CK_ULONG::MAX);
    // SAFETY: as above.
    unsafe { *count = len };
    if list.is_null() {
        return CKR_OK;
    }
    if room < len {
        return CKR_BUFFER_TOO_SMALL;
    }
    // SAFETY: the caller's buffer holds `room` ≥ `len` slot ids.
    unsafe { std::ptr::copy_nonoverlapping(visible.as_ptr(), list, visible.len()) };
    CKR_OK
}

unsafe extern "C" fn get_token_info(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    let token = slot_label(slot);
    if token.as_deref().is_some_and(scenario::removed) {
        return CKR_TOKEN_NOT_PRESENT;
    }
    if let Some(rv) = scenario::decide("C_GetTokenInfo", token.as_deref()).rv {
        return rv;
    }
    forward!(C_GetTokenInfo(slot, info))
}

unsafe extern "C" fn open_session(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    app: *mut c_void,
    notify: CK_NOTIFY,
    handle: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    let token = slot_label(slot);
    if token.as_deref().is_some_and(scenario::removed) {
        return CKR_TOKEN_NOT_PRESENT;
    }
    if let Some(rv) = scenario::decide("C_OpenSession", token.as_deref()).rv {
        return rv;
    }
    let rv = forward!(C_OpenSession(slot, flags, app, notify, handle));
    if rv == CKR_OK && !handle.is_null() {
        // SAFETY: the real module wrote the new handle there.
        let h = unsafe { *handle };
        sessions().insert(h, slot);
    }
    rv
}

unsafe extern "C" fn close_session(h: CK_SESSION_HANDLE) -> CK_RV {
    if let Some(rv) = scenario::decide("C_CloseSession", session_label(h).as_deref()).rv {
        return rv;
    }
    sessions().remove(&h);
    forward!(C_CloseSession(h))
}

unsafe extern "C" fn close_all_sessions(slot: CK_SLOT_ID) -> CK_RV {
    sessions().retain(|_, s| *s != slot);
    forward!(C_CloseAllSessions(slot))
}

unsafe extern "C" fn get_session_info(h: CK_SESSION_HANDLE, info: *mut CK_SESSION_INFO) -> CK_RV {
    if let Some(rv) = on_session("C_GetSessionInfo", h) {
        return rv;
    }
    forward!(C_GetSessionInfo(h, info))
}

unsafe extern "C" fn login(
    h: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> CK_RV {
    if let Some(rv) = on_session("C_Login", h) {
        return rv;
    }
    forward!(C_Login(h, user, pin, len))
}

unsafe extern "C" fn find_objects_init(
    h: CK_SESSION_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    if let Some(rv) = on_session("C_FindObjectsInit", h) {
        return rv;
    }
    forward!(C_FindObjectsInit(h, template, count))
}

unsafe extern "C" fn find_objects(
    h: CK_SESSION_HANDLE,
    objects: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    if let Some(rv) = on_session("C_FindObjects", h) {
        return rv;
    }
    forward!(C_FindObjects(h, objects, max, count))
}

unsafe extern "C" fn find_objects_final(h: CK_SESSION_HANDLE) -> CK_RV {
    if let Some(rv) = on_session("C_FindObjectsFinal", h) {
        return rv;
    }
    forward!(C_FindObjectsFinal(h))
}

unsafe extern "C" fn get_attribute_value(
    h: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    if let Some(rv) = on_session("C_GetAttributeValue", h) {
        return rv;
    }
    forward!(C_GetAttributeValue(h, object, template, count))
}

unsafe extern "C" fn sign_init(
    h: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    if let Some(rv) = on_session("C_SignInit", h) {
        return rv;
    }
    forward!(C_SignInit(h, mechanism, key))
}

unsafe extern "C" fn encrypt_init(
    h: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    if let Some(rv) = on_session("C_EncryptInit", h) {
        return rv;
    }
    forward!(C_EncryptInit(h, mechanism, key))
}

unsafe extern "C" fn decrypt_init(
    h: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    if let Some(rv) = on_session("C_DecryptInit", h) {
        return rv;
    }
    forward!(C_DecryptInit(h, mechanism, key))
}

/// A single-part operation (`C_Sign`, `C_Encrypt`, `C_Decrypt`): the length
/// query (no output buffer) passes through; a fault on the real call first
/// lets the real module finish the operation, as a failing token would end it.
fn single_part(
    function: &'static str,
    h: CK_SESSION_HANDLE,
    has_output: bool,
    call: impl Fn() -> CK_RV,
) -> CK_RV {
    if !has_output {
        if session_label(h).as_deref().is_some_and(scenario::removed) {
            close_real(h);
            return CKR_DEVICE_REMOVED;
        }
        return call();
    }
    match on_session(function, h) {
        Some(rv) => {
            if sessions().contains_key(&h) {
                let _ = call();
            }
            rv
        }
        None => call(),
    }
}

unsafe extern "C" fn sign(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    single_part("C_Sign", h, !out.is_null(), || {
        forward!(C_Sign(h, data, len, out, out_len))
    })
}

unsafe extern "C" fn encrypt(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    single_part("C_Encrypt", h, !out.is_null(), || {
        forward!(C_Encrypt(h, data, len, out, out_len))
    })
}

unsafe extern "C" fn decrypt(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    len: CK_ULONG,
    out: *mut CK_BYTE,
    out_len: *mut CK_ULONG,
) -> CK_RV {
    single_part("C_Decrypt", h, !out.is_null(), || {
        forward!(C_Decrypt(h, data, len, out, out_len))
    })
}

unsafe extern "C" fn generate_key(
    h: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
    key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    if let Some(rv) = on_session("C_GenerateKey", h) {
        return rv;
    }
    forward!(C_GenerateKey(h, mechanism, template, count, key))
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn generate_key_pair(
    h: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    public: *mut CK_ATTRIBUTE,
    public_count: CK_ULONG,
    private: *mut CK_ATTRIBUTE,
    private_count: CK_ULONG,
    public_key: *mut CK_OBJECT_HANDLE,
    private_key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    if let Some(rv) = on_session("C_GenerateKeyPair", h) {
        return rv;
    }
    forward!(C_GenerateKeyPair(
        h,
        mechanism,
        public,
        public_count,
        private,
        private_count,
        public_key,
        private_key
    ))
}
