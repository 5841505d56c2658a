//! Server-side encryption on the object service's data path: choosing and wrapping a data
//! key for a PUT (the sealing itself happens in `ingest`, before chunking), and opening the
//! segments a read needs. The cryptography lives in `crate::sse`.

use bytes::BytesMut;
use cairn_meta::model::{ObjectData, ObjectEncryption, ObjectRecord, SseAlgorithm, UploadRecord};
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
    /// SSE-KMS with a key of the built-in key store (None: the default key `aws/s3`).
    Kms { key_id: Option<String> },
}

impl std::fmt::Debug for SseRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::S3 => f.write_str("S3"),
            Self::Customer { .. } => f.write_str("Customer(..)"),
            Self::Kms { key_id } => write!(f, "Kms({key_id:?})"),
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

    pub(super) fn sse_s3_kek(&self) -> Result<&[u8; 32], ObjectError> {
        self.inner
            .sse_key
            .get()
            .ok_or_else(|| ObjectError::Unavailable("the SSE-S3 key is not loaded yet".into()))
    }

    /// A sealer and the record's encryption for a PUT asking for `req`.
    #[allow(clippy::type_complexity)]
    pub(super) async fn start_encryption(
        &self,
        req: Option<&SseRequest>,
    ) -> Result<(Option<Sealer>, Option<(ObjectEncryption, DataKey)>), ObjectError> {
        let Some(req) = req else {
            return Ok((None, None));
        };
        let dk = DataKey::generate();
        let mut kms_key_id = None;
        let (algorithm, kek) = match req {
            SseRequest::S3 => (SseAlgorithm::S3, *self.sse_s3_kek()?),
            SseRequest::Customer { key } => (SseAlgorithm::Customer, sse::customer_kek(key)),
            SseRequest::Kms { key_id } => {
                let (name, kek) = self.kms_key_for_write(key_id.as_deref()).await?;
                kms_key_id = Some(name);
                (SseAlgorithm::Kms, kek)
            }
        };
        let enc = ObjectEncryption {
            algorithm,
            wrapped_key: sse::wrap(&kek, &dk).map_err(sse_error)?,
            segment_size: SEGMENT_SIZE,
            part_salts: Vec::new(),
            kms_key_id,
        };
        Ok((Some(Sealer::new(&dk, SEGMENT_SIZE)), Some((enc, dk))))
    }

    /// The encryption of a new multipart upload asking for `req`: its one data key, wrapped
    /// (every part's key derives from it, see `sse::DataKey::for_part`).
    pub(super) async fn start_upload_encryption(
        &self,
        req: Option<&SseRequest>,
    ) -> Result<Option<ObjectEncryption>, ObjectError> {
        Ok(self.start_encryption(req).await?.1.map(|(e, _)| e))
    }

    /// `req`, else bucket `bucket`'s default encryption (read linearizably, so a default set
    /// through any node applies to every write that starts after it was acknowledged). Done
    /// here rather than in a front end so S3 and FileService writes alike honour it.
    pub(super) async fn or_bucket_default(
        &self,
        bucket: &str,
        req: Option<SseRequest>,
    ) -> Result<Option<SseRequest>, ObjectError> {
        if req.is_some() {
            return Ok(req);
        }
        let config = match self
            .bucket_config(bucket, super::ReadConsistency::Linearizable)
            .await
        {
            Ok(c) => c,
            // The write itself answers NoSuchBucket.
            Err(ObjectError::NoSuchBucket) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(config.encryption.map(|d| match d.algorithm {
            SseAlgorithm::Kms => SseRequest::Kms {
                key_id: d.kms_key_id,
            },
            _ => SseRequest::S3,
        }))
    }

    /// CopyObject where the source or the destination is encrypted: the source is read
    /// (decrypted with `src_key` for SSE-C) and written again as a new object under `dst_sse`
    /// (None: plaintext), with a fresh data key — chunks are never shared across keys, so an
    /// encrypted copy never reveals equality with its source. A copy between two plaintext
    /// objects keeps sharing chunks (`copy_object`).
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_object_encrypted(
        &self,
        src_bucket: &str,
        src_key_name: &str,
        src: &ObjectRecord,
        dst_bucket: &str,
        dst_key: &str,
        headers: cairn_meta::model::ObjectHeaders,
        precondition: crate::Precondition,
        lock: Option<cairn_meta::lock::VersionLock>,
        src_key: Option<[u8; 32]>,
        dst_sse: Option<SseRequest>,
    ) -> Result<ObjectRecord, ObjectError> {
        if src.encryption.is_none() && dst_sse.is_none() {
            if src_key.is_some() {
                return Err(ObjectError::CustomerKeyNotApplicable);
            }
            return self
                .copy_object(
                    src_bucket,
                    src_key_name,
                    src,
                    dst_bucket,
                    dst_key,
                    headers,
                    precondition,
                    lock,
                )
                .await;
        }
        if src.size > super::MAX_PUT_SIZE {
            return Err(ObjectError::InvalidArgument(
                "copy source is larger than 5 GiB; use UploadPartCopy".into(),
            ));
        }
        // A missing or wrong source key answers before anything is written.
        self.data_key(src, src_key.as_ref()).await?;
        let body = self.read_object_with_key(src, None, src_key.as_ref());
        // A single-PUT source's checksum is recomputed on the plaintext (same algorithm);
        // a multipart source's composite checksum does not carry over (as for AWS copies).
        let checksum_algo = match (&src.parts, &src.checksum) {
            (None, Some((algo, _))) => Some(*algo),
            _ => None,
        };
        let opts = super::PutOptions {
            headers,
            content_length: Some(src.size),
            checksum_algo,
            precondition,
            encryption: dst_sse,
            // A copy is not asked for Content-MD5 (its source's bytes are verified as read).
            lock: super::LockRequest {
                explicit: lock,
                integrity_checked: true,
            },
            ..Default::default()
        };
        self.put_object(dst_bucket, dst_key, body, opts).await
    }

    /// The sealer of a new part of `upload`, its salt, and the upload's data key (None for a
    /// plaintext upload). A part of an SSE-C upload must bring the upload's customer key
    /// (`PartCustomerKeyRequired` without, `PartCustomerKeyMismatch` with another); a part of
    /// any other upload must not bring one.
    #[allow(clippy::type_complexity)]
    pub(super) async fn start_part_encryption(
        &self,
        upload: &UploadRecord,
        req: Option<&SseRequest>,
    ) -> Result<Option<(Sealer, Vec<u8>, DataKey)>, ObjectError> {
        let customer = match req {
            Some(SseRequest::Customer { key }) => Some(key),
            _ => None,
        };
        let Some(enc) = &upload.encryption else {
            return match customer {
                Some(_) => Err(ObjectError::CustomerKeyNotApplicable),
                None => Ok(None),
            };
        };
        let dk = match (enc.algorithm, customer) {
            (SseAlgorithm::Customer, None) => return Err(ObjectError::PartCustomerKeyRequired),
            (SseAlgorithm::Customer, Some(k)) => {
                sse::unwrap(&sse::customer_kek(k), &enc.wrapped_key)
                    .map_err(|_| ObjectError::PartCustomerKeyMismatch)?
            }
            (_, Some(_)) => return Err(ObjectError::CustomerKeyNotApplicable),
            (_, None) => self.open_key(enc, None).await?,
        };
        let salt = sse::new_salt();
        let sealer = Sealer::new(&dk.for_part(&salt), enc.segment_size);
        Ok(Some((sealer, salt, dk)))
    }

    /// Opens the data key of `enc` (`customer_key` for SSE-C).
    async fn open_key(
        &self,
        enc: &ObjectEncryption,
        customer_key: Option<&[u8; 32]>,
    ) -> Result<DataKey, ObjectError> {
        let kek = match (enc.algorithm, customer_key) {
            (SseAlgorithm::S3, None) => *self.sse_s3_kek()?,
            (SseAlgorithm::Customer, Some(k)) => sse::customer_kek(k),
            (SseAlgorithm::Customer, None) => return Err(ObjectError::CustomerKeyRequired),
            (_, Some(_)) => return Err(ObjectError::CustomerKeyNotApplicable),
            (SseAlgorithm::Kms, None) => self.kms_kek(enc.kms_key_id.as_deref()).await?,
        };
        sse::unwrap(&kek, &enc.wrapped_key).map_err(|e| match (e, enc.algorithm) {
            (SseError::WrongKey, SseAlgorithm::Customer) => ObjectError::WrongCustomerKey,
            (SseError::WrongKey, _) => ObjectError::DataLoss(
                "the object's data key cannot be unwrapped with the cluster's key".into(),
            ),
            (e, _) => sse_error(e),
        })
    }

    /// The data key of `record` (None when it is not encrypted). An SSE-C object needs the
    /// customer's key: `CustomerKeyRequired` without it, `WrongCustomerKey` with another;
    /// any other object refuses a customer key as S3 does.
    pub async fn data_key(
        &self,
        record: &ObjectRecord,
        customer_key: Option<&[u8; 32]>,
    ) -> Result<Option<DataKey>, ObjectError> {
        match &record.encryption {
            None => match customer_key {
                Some(_) => Err(ObjectError::CustomerKeyNotApplicable),
                None => Ok(None),
            },
            Some(enc) => self.open_key(enc, customer_key).await.map(Some),
        }
    }

    /// `read_object` for an object that may be SSE-C encrypted: plaintext bytes
    /// `[start, end)`, opening only the segments the range touches (of only the parts it
    /// touches, for a multipart object).
    pub fn read_object_with_key(
        &self,
        record: &ObjectRecord,
        range: Option<(u64, u64)>,
        customer_key: Option<&[u8; 32]>,
    ) -> ByteStream {
        let Some(enc) = &record.encryption else {
            return self.read_stored(&record.data, record.size, range);
        };
        if enc.algorithm == SseAlgorithm::Customer && customer_key.is_none() {
            return fail(ObjectError::CustomerKeyRequired);
        }
        // The data key may need a key-store lookup (SSE-KMS): open it when the stream is
        // first polled.
        let this = self.clone();
        let record = record.clone();
        let customer_key = customer_key.copied();
        Box::pin(
            futures::stream::once(async move {
                match this.data_key(&record, customer_key.as_ref()).await {
                    Ok(Some(dk)) => this.read_sealed(&record, range, &dk),
                    Ok(None) => this.read_stored(&record.data, record.size, range),
                    Err(e) => fail(e),
                }
            })
            .flatten(),
        )
    }

    /// Plaintext `[start, end)` of an encrypted `record` whose data key is `dk`.
    fn read_sealed(
        &self,
        record: &ObjectRecord,
        range: Option<(u64, u64)>,
        dk: &DataKey,
    ) -> ByteStream {
        let Some(enc) = &record.encryption else {
            return self.read_stored(&record.data, record.size, range);
        };
        let (start, end) = range.unwrap_or((0, record.size));
        let end = end.min(record.size);
        if start >= end {
            return Box::pin(futures::stream::iter([Ok(bytes::Bytes::new())]));
        }
        let pieces = match sealed_pieces(record, enc, dk) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let total = pieces
            .last()
            .map_or(0, |p| p.sealed_start + p.layout.sealed_size());
        let mut streams = Vec::new();
        for p in pieces {
            let (ps, pe) = (p.plain_start, p.plain_start + p.layout.size);
            if pe <= start || ps >= end {
                continue;
            }
            let (a, b) = (start.max(ps) - ps, end.min(pe) - ps);
            streams.push(self.open_piece(&record.data, total, p, a, b));
        }
        Box::pin(futures::stream::iter(streams).flatten())
    }

    /// Plaintext `[start, end)` of one sealed piece (requires `start < end <= size`).
    fn open_piece(
        &self,
        data: &ObjectData,
        total: u64,
        piece: Piece,
        start: u64,
        end: u64,
    ) -> ByteStream {
        let layout = piece.layout;
        let span = layout.span(start, end);
        let raw = self.read_stored(
            data,
            total,
            Some((
                piece.sealed_start + span.sealed_start,
                piece.sealed_start + span.sealed_end,
            )),
        );
        let state = Opening {
            raw,
            buf: BytesMut::new(),
            index: span.first,
            last: span.last,
            skip: span.skip as usize,
            left: end - start,
            dk: piece.key,
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

/// One independently sealed segment stream of an object: the whole object for a single
/// PUT, one part for a completed multipart upload.
fn fail(e: ObjectError) -> ByteStream {
    Box::pin(futures::stream::iter([Err(e)]))
}

struct Piece {
    key: DataKey,
    plain_start: u64,
    sealed_start: u64,
    layout: Layout,
}

/// The sealed pieces of `record`, in order.
fn sealed_pieces(
    record: &ObjectRecord,
    enc: &ObjectEncryption,
    dk: &DataKey,
) -> Result<Vec<Piece>, ObjectError> {
    if enc.part_salts.is_empty() {
        return Ok(vec![Piece {
            key: dk.clone(),
            plain_start: 0,
            sealed_start: 0,
            layout: Layout::new(record.size, enc.segment_size),
        }]);
    }
    let sizes = record.parts.as_deref().unwrap_or_default();
    if sizes.len() != enc.part_salts.len() {
        return Err(ObjectError::DataLoss(
            "an encrypted multipart object lists a salt per part, but the counts differ".into(),
        ));
    }
    let (mut plain, mut sealed) = (0u64, 0u64);
    let mut out = Vec::with_capacity(sizes.len());
    for (size, salt) in sizes.iter().zip(&enc.part_salts) {
        let layout = Layout::new(*size, enc.segment_size);
        out.push(Piece {
            key: dk.for_part(salt),
            plain_start: plain,
            sealed_start: sealed,
            layout,
        });
        plain += size;
        sealed += layout.sealed_size();
    }
    Ok(out)
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
