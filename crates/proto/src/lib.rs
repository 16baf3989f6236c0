//! The Mentorstream v1 protobuf contracts (`proto/`), generated at build time.
//!
//! Modules mirror the protobuf packages: `mentorstream.kpi.v1` is [`kpi::v1`].

#![allow(missing_debug_implementations, clippy::large_enum_variant)]

/// Encoded `FileDescriptorSet` of every Mentorstream proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mentorstream_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("mentorstream.common.v1");

        impl From<chrono::NaiveDate> for LocalDate {
            fn from(day: chrono::NaiveDate) -> Self {
                use chrono::Datelike as _;
                Self {
                    year: day.year(),
                    month: day.month().cast_signed(),
                    day: day.day().cast_signed(),
                }
            }
        }

        impl LocalDate {
            /// The calendar day, None for one that does not exist (2026-02-30, month 0).
            pub fn to_naive(&self) -> Option<chrono::NaiveDate> {
                chrono::NaiveDate::from_ymd_opt(
                    self.year,
                    u32::try_from(self.month).ok()?,
                    u32::try_from(self.day).ok()?,
                )
            }
        }
    }
}

pub mod activity {
    pub mod v1 {
        tonic::include_proto!("mentorstream.activity.v1");
    }
}

pub mod ingest {
    pub mod v1 {
        tonic::include_proto!("mentorstream.ingest.v1");
    }
}

pub mod kpi {
    pub mod v1 {
        tonic::include_proto!("mentorstream.kpi.v1");

        impl Fraction {
            /// `numerator / denominator` in hundredths, rounded half to even (`None` while the
            /// denominator is 0): 2/3 → 67, for "0.67" or "67 %".
            pub fn hundredths(&self) -> Option<i64> {
                if self.denominator == 0 {
                    return None;
                }
                let scaled = i128::from(self.numerator) * 100;
                let denominator = i128::from(self.denominator);
                let (mut quotient, remainder) = (scaled / denominator, scaled % denominator);
                let twice = (2 * remainder).abs();
                if twice > denominator.abs() || (twice == denominator.abs() && quotient % 2 != 0) {
                    quotient += if (scaled < 0) == (denominator < 0) {
                        1
                    } else {
                        -1
                    };
                }
                i64::try_from(quotient).ok()
            }
        }
    }
}

pub mod mentorship {
    pub mod v1 {
        tonic::include_proto!("mentorstream.mentorship.v1");
    }
}

pub mod notification {
    pub mod v1 {
        tonic::include_proto!("mentorstream.notification.v1");
    }
}
