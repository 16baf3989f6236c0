//! What the notifier sends: each [`Kind`] has one template per language and belongs to the
//! [`Category`] partners opt out of.

use mentorstream_proto::notification::v1 as proto;

/// The notification categories of NotificationService, by their stored names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    SessionReminder,
    FeedbackRequest,
    Congratulation,
    Inactivity,
    WeeklyDigest,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Self::SessionReminder,
        Self::FeedbackRequest,
        Self::Congratulation,
        Self::Inactivity,
        Self::WeeklyDigest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::SessionReminder => "session_reminder",
            Self::FeedbackRequest => "feedback_request",
            Self::Congratulation => "congratulation",
            Self::Inactivity => "inactivity",
            Self::WeeklyDigest => "weekly_digest",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|category| category.name() == name)
    }

    pub fn from_proto(category: proto::Category) -> Option<Self> {
        match category {
            proto::Category::Unspecified => None,
            proto::Category::SessionReminder => Some(Self::SessionReminder),
            proto::Category::FeedbackRequest => Some(Self::FeedbackRequest),
            proto::Category::Congratulation => Some(Self::Congratulation),
            proto::Category::Inactivity => Some(Self::Inactivity),
            proto::Category::WeeklyDigest => Some(Self::WeeklyDigest),
        }
    }

    pub fn to_proto(self) -> proto::Category {
        match self {
            Self::SessionReminder => proto::Category::SessionReminder,
            Self::FeedbackRequest => proto::Category::FeedbackRequest,
            Self::Congratulation => proto::Category::Congratulation,
            Self::Inactivity => proto::Category::Inactivity,
            Self::WeeklyDigest => proto::Category::WeeklyDigest,
        }
    }
}

/// One message template, by its stored name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Reminder24h,
    Reminder15m,
    FeedbackRequest,
    FirstSale,
    FirstSaleMentor,
    GoalAchieved,
    GoalAchievedMentor,
    RankAchieved,
    RankAchievedMentor,
    Inactive,
    InactiveMentor,
    AtRiskMentor,
    WeeklyDigest,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Self::Reminder24h,
        Self::Reminder15m,
        Self::FeedbackRequest,
        Self::FirstSale,
        Self::FirstSaleMentor,
        Self::GoalAchieved,
        Self::GoalAchievedMentor,
        Self::RankAchieved,
        Self::RankAchievedMentor,
        Self::Inactive,
        Self::InactiveMentor,
        Self::AtRiskMentor,
        Self::WeeklyDigest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Reminder24h => "reminder_24h",
            Self::Reminder15m => "reminder_15m",
            Self::FeedbackRequest => "feedback_request",
            Self::FirstSale => "first_sale",
            Self::FirstSaleMentor => "first_sale_mentor",
            Self::GoalAchieved => "goal_achieved",
            Self::GoalAchievedMentor => "goal_achieved_mentor",
            Self::RankAchieved => "rank_achieved",
            Self::RankAchievedMentor => "rank_achieved_mentor",
            Self::Inactive => "inactive",
            Self::InactiveMentor => "inactive_mentor",
            Self::AtRiskMentor => "at_risk_mentor",
            Self::WeeklyDigest => "weekly_digest",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    pub fn category(self) -> Category {
        match self {
            Self::Reminder24h | Self::Reminder15m => Category::SessionReminder,
            Self::FeedbackRequest => Category::FeedbackRequest,
            Self::FirstSale
            | Self::FirstSaleMentor
            | Self::GoalAchieved
            | Self::GoalAchievedMentor
            | Self::RankAchieved
            | Self::RankAchievedMentor => Category::Congratulation,
            Self::Inactive | Self::InactiveMentor | Self::AtRiskMentor => Category::Inactivity,
            Self::WeeklyDigest => Category::WeeklyDigest,
        }
    }
}

/// A delivery channel, by its stored name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Chatbot,
    Email,
}

impl Channel {
    /// The order used when a partner names none.
    pub const ALL: [Channel; 2] = [Self::Chatbot, Self::Email];

    pub fn name(self) -> &'static str {
        match self {
            Self::Chatbot => "chatbot",
            Self::Email => "email",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|channel| channel.name() == name)
    }

    pub fn from_proto(channel: proto::Channel) -> Option<Self> {
        match channel {
            proto::Channel::Unspecified => None,
            proto::Channel::Chatbot => Some(Self::Chatbot),
            proto::Channel::Email => Some(Self::Email),
        }
    }

    pub fn to_proto(self) -> proto::Channel {
        match self {
            Self::Chatbot => proto::Channel::Chatbot,
            Self::Email => proto::Channel::Email,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        for category in Category::ALL {
            assert_eq!(Category::from_name(category.name()), Some(category));
            assert_eq!(Category::from_proto(category.to_proto()), Some(category));
        }
        for channel in Channel::ALL {
            assert_eq!(Channel::from_name(channel.name()), Some(channel));
            assert_eq!(Channel::from_proto(channel.to_proto()), Some(channel));
        }
    }
}
