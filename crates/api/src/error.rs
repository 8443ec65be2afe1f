//! Errors as Docker's daemon answers them: a status code and `{"message": ...}`.

use berth_engine::EngineError;
use berth_store::StoreError;
use hyper::StatusCode;

/// An answer other than success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Docker's status for it.
    pub status: StatusCode,
    /// One line.
    pub message: String,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let status = match &e {
            EngineError::Store(s) => return store_error(s, e.to_string()),
            EngineError::NoSuchContainer(_)
            | EngineError::NoSuchNetwork(_)
            | EngineError::NoSuchVolume(_)
            | EngineError::NoSuchVolumeDriver(_)
            | EngineError::NoSuchPath { .. } => StatusCode::NOT_FOUND,
            EngineError::ReadOnlyRootfs => StatusCode::FORBIDDEN,
            EngineError::NameInUse { .. }
            | EngineError::NetworkExists(_)
            | EngineError::Conflict(_)
            | EngineError::Running(_)
            | EngineError::NotRunning(_)
            | EngineError::VolumeInUse { .. } => StatusCode::CONFLICT,
            EngineError::Invalid(_) | EngineError::Ambiguous(_) | EngineError::NotADirectory => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let message = e.to_string();
        store_error(&e, message)
    }
}

pub(crate) fn store_error(e: &StoreError, message: String) -> ApiError {
    let status = match e {
        StoreError::ImageNotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Conflict(_) => StatusCode::CONFLICT,
        StoreError::Filter(_) | StoreError::Reference(_) | StoreError::AmbiguousImage(_) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_take_dockers_status_codes() {
        let status = |e: EngineError| ApiError::from(e).status;
        assert_eq!(status(EngineError::NoSuchContainer("x".into())), 404);
        assert_eq!(status(EngineError::NotRunning("x".into())), 409);
        assert_eq!(status(EngineError::Invalid("x".into())), 400);
        assert_eq!(
            status(EngineError::Store(StoreError::ImageNotFound(
                "busybox".into()
            ))),
            404
        );
        let e = ApiError::from(EngineError::NoSuchContainer("abc".into()));
        assert_eq!(e.message, "No such container: abc");
    }
}
