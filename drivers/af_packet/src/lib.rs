//! AF_PACKET PMD (being written).
