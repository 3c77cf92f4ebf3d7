//! Inbound requests that do not decode, made visible so they can be penalized.
//!
//! libp2p's request-response behaviour drops an inbound stream whose request
//! fails to decode and only logs it: the node never learns which peer sent
//! it, so a peer could send malformed requests forever at no cost. The codecs
//! here read the bytes themselves and hand a request that is too long or not
//! CBOR of the expected shape up as [`Inbound::Malformed`], with a response
//! channel like any request, so the protocol's handler can strike the peer
//! and drop the channel. Failures of the stream itself (a reset, a closed
//! connection) stay I/O errors: they are not the peer's bad input.
//!
//! [`CheckedCbor`] is byte for byte the encoding of libp2p's CBOR codec
//! (cbor4ii's serde encoding), so either end may use either.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io;
use std::marker::PhantomData;

/// A request as it arrived: decoded, or refused and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<R> {
    /// A well-formed request (its own bounds still to check).
    Request(R),
    /// Bytes that were too long or did not decode; never sent.
    Malformed(String),
}

impl<R> From<R> for Inbound<R> {
    fn from(request: R) -> Self {
        Self::Request(request)
    }
}

/// What the reader of a request does with its bytes: decode, or tell why not.
pub(crate) fn decode_request<R: DeserializeOwned>(bytes: &[u8], max: usize) -> Inbound<R> {
    if bytes.len() > max {
        return Inbound::Malformed(format!("request longer than {max} bytes"));
    }
    match cbor4ii::serde::from_slice(bytes) {
        Ok(request) => Inbound::Request(request),
        Err(err) => Inbound::Malformed(err.to_string()),
    }
}

/// Encodes an outbound request; a [`Inbound::Malformed`] is never sent.
pub(crate) fn encode_request<R: Serialize>(
    request: &Inbound<R>,
    capacity: usize,
) -> io::Result<Vec<u8>> {
    match request {
        Inbound::Request(request) => {
            cbor4ii::serde::to_vec(Vec::with_capacity(capacity), request).map_err(io::Error::other)
        }
        Inbound::Malformed(_) => Err(io::Error::other("a malformed request is never sent")),
    }
}

/// A CBOR request-response codec with byte limits whose malformed requests
/// arrive as [`Inbound::Malformed`]; see the module doc.
#[derive(Debug)]
pub struct CheckedCbor<Req, Resp> {
    request_max: u64,
    response_max: u64,
    types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for CheckedCbor<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            request_max: self.request_max,
            response_max: self.response_max,
            types: PhantomData,
        }
    }
}

impl<Req, Resp> CheckedCbor<Req, Resp> {
    /// A codec refusing requests over `request_max` bytes and responses
    /// over `response_max` bytes.
    pub fn new(request_max: u64, response_max: u64) -> Self {
        Self {
            request_max,
            response_max,
            types: PhantomData,
        }
    }
}

impl<Req, Resp> request_response::Codec for CheckedCbor<Req, Resp>
where
    Req: Send + Serialize + DeserializeOwned,
    Resp: Send + Serialize + DeserializeOwned,
{
    type Protocol = StreamProtocol;
    type Request = Inbound<Req>;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Inbound<Req>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        // One byte more than allowed tells "too long" from "just fits".
        io.take(self.request_max.saturating_add(1))
            .read_to_end(&mut bytes)
            .await?;
        let max = usize::try_from(self.request_max).unwrap_or(usize::MAX);
        Ok(decode_request(&bytes, max))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        io.take(self.response_max.saturating_add(1))
            .read_to_end(&mut bytes)
            .await?;
        if bytes.len() as u64 > self.response_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response longer than {} bytes", self.response_max),
            ));
        }
        cbor4ii::serde::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Inbound<Req>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode_request(&request, 256)?).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &response).map_err(io::Error::other)?;
        io.write_all(&bytes).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    type Codec16 = CheckedCbor<Vec<u32>, String>;

    fn read(codec: &mut Codec16, bytes: Vec<u8>) -> io::Result<Inbound<Vec<u32>>> {
        block_on(codec.read_request(&StreamProtocol::new("/t/1"), &mut Cursor::new(bytes)))
    }

    #[test]
    fn malformed_and_oversized_requests_arrive_as_such() {
        let mut codec = Codec16::new(16, 16);
        let mut wire = Cursor::new(Vec::new());
        block_on(codec.write_request(
            &StreamProtocol::new("/t/1"),
            &mut wire,
            Inbound::Request(vec![1, 2]),
        ))
        .unwrap();
        let wire = wire.into_inner();
        // Byte for byte libp2p's CBOR codec.
        assert_eq!(
            wire,
            cbor4ii::serde::to_vec(Vec::new(), &vec![1u32, 2]).unwrap()
        );
        assert_eq!(
            read(&mut codec, wire).unwrap(),
            Inbound::Request(vec![1, 2])
        );
        assert!(matches!(
            read(&mut codec, b"\xff\xfe garbage".to_vec()).unwrap(),
            Inbound::Malformed(_)
        ));
        assert!(matches!(
            read(&mut codec, vec![0x80; 17]).unwrap(),
            Inbound::Malformed(reason) if reason.contains("longer")
        ));
        // A string where numbers are expected: a wrong type, not a panic.
        let wrong = cbor4ii::serde::to_vec(Vec::new(), &"text").unwrap();
        assert!(matches!(
            read(&mut codec, wrong).unwrap(),
            Inbound::Malformed(_)
        ));
    }
}
