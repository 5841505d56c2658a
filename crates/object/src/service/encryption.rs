//! Server-side encryption on the object service's data path: choosing and wrapping a data
//! key for a PUT (the sealing itself happens in `ingest`, before chunking), and opening the
//! segments a read needs. The cryptography lives in `crate::sse`.

use bytes::BytesMut;
use cairn_meta::model::{ObjectEncryption, ObjectRecord, SseAlgorithm};
use futures::StreamExt;

use super::{ByteStream, ObjectService};
use crate::sse::{self, DataKey, Layout, Sealer, SseError, SEGMENT_SIZE};
use crate::ObjectError;

/// The encryption a PUT asks for.
#[derive(Clone)]
pub enum SseRequest {
    /// SSE-S3: the data key is wrapped by the cluster's SSE key.
    S3,
    /// SSE-C with the customer's 256-bit key (already checked against its MD5).
    Customer { key: [u8; 32] },
}

impl std::fmt::Debug for SseRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::S3 => f.write_str("S3"),
            Self::Customer { .. } => f.write_str("Customer(..)"),
        }
    }
}

pub(super) fn sse_error(e: SseError) -> ObjectError {
    match e {
        SseError::WrongKey => ObjectError::WrongCustomerKey,
        SseError::Tampered(i) => ObjectError::DataLoss(format!(
            "encrypted segment {i} fails authentication (tampered or truncated)"
        )),
        SseError::Seal => ObjectError::Storage("sealing an encrypted segment failed".into()),
    }
}

/// The ETag of a new single-PUT object: the plaintext MD5, except for SSE-C where S3 does
/// not reveal it (a digest keyed by the object's data key instead).
pub(super) fn encryption_etag(enc: &Option<(ObjectEncryption, DataKey)>, md5: &[u8; 16]) -> String {
    match enc {
        Some((e, dk)) if e.algorithm == SseAlgorithm::Customer => hex::encode(dk.tag(md5)),
        _ => hex::encode(md5),
    }
}

impl ObjectService {
    /// Installs the SSE-S3 key-encryption key (derived from the cluster master key with
    /// `sse::SSE_S3_CONTEXT`). Until then SSE-S3 writes and reads fail as unavailable.
    pub fn set_sse_key(&self, key: [u8; 32]) {
        let _ = self.inner.sse_key.set(key);
    }

    fn sse_s3_kek(&self) -> Result<&[u8; 32], ObjectError> {
        self.inner
            .sse_key
            .get()
            .ok_or_else(|| ObjectError::Unavailable("the SSE-S3 key is not loaded yet".into()))
    }

    /// A sealer and the record's encryption for a PUT asking for `req`.
    #[allow(clippy::type_complexity)]
    pub(super) fn start_encryption(
        &self,
        req: Option<&SseRequest>,
    ) -> Result<(Option<Sealer>, Option<(ObjectEncryption, DataKey)>), ObjectError> {
        let Some(req) = req else {
            return Ok((None, None));
        };
        let dk = DataKey::generate();
        let (algorithm, kek) = match req {
            SseRequest::S3 => (SseAlgorithm::S3, *self.sse_s3_kek()?),
            SseRequest::Customer { key } => (SseAlgorithm::Customer, sse::customer_kek(key)),
        };
        let enc = ObjectEncryption {
            algorithm,
            wrapped_key: sse::wrap(&kek, &dk).map_err(sse_error)?,
            segment_size: SEGMENT_SIZE,
        };
        Ok((Some(Sealer::new(&dk, SEGMENT_SIZE)), Some((enc, dk))))
    }

    /// The data key of `record` (None when it is not encrypted). An SSE-C object needs the
    /// customer's key: `CustomerKeyRequired` without it, `WrongCustomerKey` with another;
    /// any other object refuses a customer key as S3 does.
    pub fn data_key(
        &self,
        record: &ObjectRecord,
        customer_key: Option<&[u8; 32]>,
    ) -> Result<Option<DataKey>, ObjectError> {
        let Some(enc) = &record.encryption else {
            return match customer_key {
                Some(_) => Err(ObjectError::CustomerKeyNotApplicable),
                None => Ok(None),
            };
        };
        let kek = match (enc.algorithm, customer_key) {
            (SseAlgorithm::S3, None) => *self.sse_s3_kek()?,
            (SseAlgorithm::S3, Some(_)) => return Err(ObjectError::CustomerKeyNotApplicable),
            (SseAlgorithm::Customer, Some(k)) => sse::customer_kek(k),
            (SseAlgorithm::Customer, None) => return Err(ObjectError::CustomerKeyRequired),
        };
        sse::unwrap(&kek, &enc.wrapped_key)
            .map(Some)
            .map_err(|e| match (e, enc.algorithm) {
                (SseError::WrongKey, SseAlgorithm::S3) => ObjectError::DataLoss(
                    "the object's data key cannot be unwrapped with this cluster's SSE key".into(),
                ),
                (e, _) => sse_error(e),
            })
    }

    /// `read_object` for an object that may be SSE-C encrypted: plaintext bytes
    /// `[start, end)`, opening only the segments the range touches.
    pub fn read_object_with_key(
        &self,
        record: &ObjectRecord,
        range: Option<(u64, u64)>,
        customer_key: Option<&[u8; 32]>,
    ) -> ByteStream {
        let Some(enc) = &record.encryption else {
            return self.read_stored(&record.data, record.size, range);
        };
        let dk = match self.data_key(record, customer_key) {
            Ok(Some(dk)) => dk,
            Ok(None) => return self.read_stored(&record.data, record.size, range),
            Err(e) => return Box::pin(futures::stream::iter([Err(e)])),
        };
        let (start, end) = range.unwrap_or((0, record.size));
        let end = end.min(record.size);
        if start >= end {
            return Box::pin(futures::stream::iter([Ok(bytes::Bytes::new())]));
        }
        let layout = Layout::new(record.size, enc.segment_size);
        let span = layout.span(start, end);
        let raw = self.read_stored(
            &record.data,
            layout.sealed_size(),
            Some((span.sealed_start, span.sealed_end)),
        );
        let state = Opening {
            raw,
            buf: BytesMut::new(),
            index: span.first,
            last: span.last,
            skip: span.skip as usize,
            left: end - start,
            dk,
            layout,
        };
        Box::pin(futures::stream::unfold(state, move |mut st| async move {
            if st.index > st.last || st.left == 0 {
                return None;
            }
            let need = st.layout.sealed_len(st.index) as usize;
            while st.buf.len() < need {
                match st.raw.next().await {
                    Some(Ok(b)) => st.buf.extend_from_slice(&b),
                    Some(Err(e)) => {
                        st.left = 0;
                        return Some((Err(e), st));
                    }
                    None => {
                        st.left = 0;
                        let e = ObjectError::DataLoss("sealed object shorter than recorded".into());
                        return Some((Err(e), st));
                    }
                }
            }
            let sealed = st.buf.split_to(need);
            let is_last = st.index + 1 == st.layout.segments();
            let plain = match sse::open_segment(&st.dk, st.index, is_last, &sealed) {
                Ok(p) => p,
                Err(e) => {
                    st.left = 0;
                    return Some((Err(sse_error(e)), st));
                }
            };
            st.index += 1;
            let from = std::mem::take(&mut st.skip).min(plain.len());
            let to = (from as u64 + st.left).min(plain.len() as u64) as usize;
            st.left -= (to - from) as u64;
            Some((Ok(bytes::Bytes::copy_from_slice(&plain[from..to])), st))
        }))
    }
}

struct Opening {
    raw: ByteStream,
    buf: BytesMut,
    index: u64,
    last: u64,
    skip: usize,
    left: u64,
    dk: DataKey,
    layout: Layout,
}
