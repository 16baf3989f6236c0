// Mentorstream dashboards in the browser: one module, no libraries, no build step.
// The contract (paths, JSON shapes, DOM hooks, live stream) is docs/dashboards.md.
//
// Hooks other code relies on:
//   <html data-ready="true">          after the first full render ("error" when an error is shown)
//   [data-live="KIND:id|WINDOW|METRIC"] + [data-value]   every number taken from a card
//   time[data-as-of="KIND:id|WINDOW"][datetime]           every card's asOf; also
//       LEADERBOARD:METRIC|MONTH, SERIES:METRIC|DAY, JOURNEY:partnerId (not live: on load)
//   [data-previous="KIND:id|WINDOW|METRIC"] + [data-value] previous-period numbers (team page;
//                                     not live: the stream only carries the current periods)
//   html[data-error="CODE"], html[data-gone="CODE"]       a load error; the link expired while open
//   [data-need="menteeId:REASON"]                         "who needs me today" items
//   [data-leaderboard=METRIC] [data-partner=id][data-value]  leaderboard rows, in rank order
//   [data-first-sale=label|"none"][data-count]            first-sale buckets (hidden table rows)
//   [data-goal="partnerId/goalId"]  a goal; its progress is [data-live="GOAL:partnerId/goalId|PROGRESS"]
//   [data-session=STATE][data-invited][data-attended]     this week's sessions (mentor page)
//   [data-feedback=menteeId][data-rating]                 feedback received (mentor page)
//   [data-hidden-mentees=N]          a group whose numbers the viewer may not see (mentor page)

const PAGES = ['partner', 'mentor', 'team'];
const LANGS = ['ru', 'en'];
const html = document.documentElement;
const params = new URLSearchParams(location.search);

// ---------------------------------------------------------------------------------------------
// UI strings. `{name}` is a placeholder; plural nouns are objects keyed by Intl.PluralRules.

const METRIC_ORDER = [
  'SALES_VOLUME', 'ORDERS', 'RECRUITS', 'ACTIVE_DAYS', 'GROUP_SIZE', 'RETENTION_30D',
  'FEEDBACK_AVG', 'SESSIONS_COMPLETED', 'SESSIONS_MISSED', 'MODULES_COMPLETED',
  'LEARNING_MINUTES', 'EVENTS_ATTENDED', 'RANK_ADVANCEMENTS', 'PARTNERS', 'TEAM_DEPTH',
  'FEEDBACK_COUNT', 'FEEDBACK_SUM',
];

const STRINGS = {
  ru: {
    skip: 'Перейти к содержимому', loading: 'Загружаем данные…', language: 'Язык',
    langName: { ru: 'Русский', en: 'English' },
    partnerSelf: 'Мои показатели', partnerOther: 'Показатели партнёра',
    mentorSelf: 'Моя группа', mentorSelfMany: 'Мои группы', mentorOther: 'Группы наставника',
    team: 'Команда', numbers: 'Показатели', week: 'Неделя', month: 'Месяц', lifetime: 'За всё время',
    since: 'с {date}', allNumbers: 'Все показатели', asOf: 'на {time}', noData: 'нет данных',
    previous: 'было {value}', previousWEEK: 'вся прошлая неделя: {value}', previousMONTH: 'весь прошлый месяц: {value}', change: 'изменение', pp: 'п.\u00a0п.',
    ofCount: '{a} из {b}', of: 'из', updated: 'Обновлено',
    rank: 'Ранг', enrolled: 'В бизнесе с {date}', pageDate: 'Дата: {date}',
    goals: 'Цели', noGoals: 'Целей пока нет.', due: 'до {date}',
    goalStatus: { IN_PROGRESS: 'В процессе', ACHIEVED: 'Достигнута', MISSED: 'Не достигнута' },
    nextSessions: 'Ближайшие встречи', noSessions: 'Встреч пока не запланировано.',
    sessionState: { SCHEDULED: 'Запланирована', COMPLETED: 'Проведена', CANCELLED: 'Отменена', MISSED: 'Пропущена' },
    journey: 'Мой путь', journeyOther: 'Путь партнёра', daysToFirstSale: 'До первой продажи',
    noFirstSale: 'Первой продажи пока нет', firstSale: 'Первая продажа', currentRank: 'Текущий ранг',
    start: 'Старт', afterDays: 'через {days}',
    activity: 'Активность за 28 дней', streak: 'Серия', inARow: '{days} подряд',
    activeOf: 'Активных дней: {a} из {b}', activeDay: 'активен', quietDay: 'без активности',
    needsYou: 'Кому я нужен сегодня', needsNone: 'Сегодня всё спокойно: никто не ждёт вашего внимания.',
    reason: {
      QUIET: 'Нет активности {days}', QUIET_NODAYS: 'Давно не проявлялся',
      MISSED_SESSION: 'Пропуск встречи', MISSED_MANY: 'Пропусков встреч: {n}', GOAL_BEHIND: 'Отстаёт от цели', NO_PLAN: 'Нет плана развития',
    },
    places: '{a} из {b} мест', programKind: { PILOT: 'Пилот', STANDARD: 'Стандарт' },
    mentees: 'Участники', menteesCaption: 'Участники группы «{group}»: показатели за неделю и цели',
    mentee: 'Участник', lastActive: 'Активность', quiet: 'Тишина {days}', never: 'ещё не было',
    noMentees: 'В группе пока никого нет.', noGroups: 'Групп пока нет.',
    hiddenMentees: 'Показатели группы скрыты: в ней есть партнёры не из вашей команды (скрыто: {n}).',
    sessionsWeek: 'Встречи этой недели', done: 'Проведены', missed: 'Пропущены', upcoming: 'Предстоят',
    cancelled: 'Отменены', none: 'Нет.', attended: 'Пришли: {a} из {b}', invited: 'Приглашено: {n}',
    feedback: 'Последние отзывы', noFeedback: 'Отзывов пока нет.', rating: 'Оценка {r} из 5',
    teamSize: 'В команде: {n}', truncated: 'Команда большая: распределение и удержание посчитаны по первым {n}.', leaders: 'Лидеры месяца', noLeaders: 'Пока без результатов.',
    dynamics: 'Динамика за 30 дней', firstSaleTitle: 'Время до первой продажи',
    withoutSale: 'Без продаж: {n}', median: 'Медиана: {days}', partnersTotal: 'Всего партнёров: {n}',
    retention: 'Удержание по неделям', retentionNone: 'Пока никто в команде не прошёл полной недели после старта.', perDay: '{metric} по дням, {from} — {to}: всего {total}, максимум {max} ({date}).',
    firstSaleSummary: 'Дней до первой продажи, партнёров в интервале: {list}.',
    retentionSummary: 'Доля активных партнёров по неделям после старта: {list}.',
    weekN: 'Неделя {n}', weekShort: 'Нед. {n}', date: 'Дата', value: 'Значение', interval: 'Дней до продажи',
    partnersCol: 'Партнёров', eligible: 'В выборке', activeCol: 'Активны', share: 'Доля', noSaleBar: 'нет',
    live: 'Обновляется онлайн', reconnecting: 'Переподключаемся…', stopped: 'Обновления остановлены',
    retry: 'Повторить', errorCode: 'Код: {code}',
    errors: {
      DASHBOARD_LINK_INVALID: ['Ссылка недействительна', 'Ссылка неполная или была изменена. Откройте панель заново из личного кабинета.'],
      DASHBOARD_LINK_EXPIRED: ['Срок действия ссылки истёк', 'Откройте панель заново из личного кабинета — вы получите новую ссылку.'],
      DASHBOARD_FORBIDDEN: ['Нет доступа', 'По этой ссылке нельзя открыть эту страницу.'],
      DASHBOARD_LINK_MISSING: ['Нужна ссылка из личного кабинета', 'В адресе нет ключа доступа. Откройте панель из личного кабинета.'],
      DASHBOARD_PAGE_UNKNOWN: ['Такой страницы нет', 'Проверьте адрес или откройте панель из личного кабинета.'],
      DASHBOARD_DATE_INVALID: ['Неверная дата', 'Дата в адресе должна быть в формате ГГГГ-ММ-ДД.'],
      DASHBOARDS_NOT_CONFIGURED: ['Панели не настроены', 'Обратитесь к администратору вашей компании.'],
      DASHBOARD_UNAVAILABLE: ['Данные временно недоступны', 'Попробуйте ещё раз через минуту.'],
      NETWORK: ['Нет связи с сервером', 'Проверьте подключение к интернету и попробуйте ещё раз.'],
      BAD_DATA: ['Не удалось показать данные', 'Сервер прислал ответ, который страница не понимает. Попробуйте обновить её позже.'],
      SERVER: ['Что-то пошло не так', 'Сервер не смог подготовить данные. Попробуйте ещё раз чуть позже.'],
    },
    metrics: {
      RECRUITS: 'Рекрутов', SALES_VOLUME: 'Продажи (PV)', ORDERS: 'Заказов',
      MODULES_COMPLETED: 'Модулей пройдено', LEARNING_MINUTES: 'Минут обучения',
      EVENTS_ATTENDED: 'Мероприятий посещено', SESSIONS_COMPLETED: 'Встреч проведено',
      SESSIONS_MISSED: 'Встреч пропущено', FEEDBACK_AVG: 'Средняя оценка', FEEDBACK_COUNT: 'Оценок получено',
      RANK_ADVANCEMENTS: 'Новых рангов', ACTIVE_DAYS: 'Активных дней', GROUP_SIZE: 'Участников в группе',
      RETENTION_30D: 'Удержание 30 дней', FEEDBACK_SUM: 'Сумма оценок', PARTNERS: 'Партнёров',
      TEAM_DEPTH: 'Уровней в структуре',
    },
    days: { one: 'день', few: 'дня', many: 'дней', other: 'дня' },
    ratings: { one: 'оценка', few: 'оценки', many: 'оценок', other: 'оценки' },
    partners: { one: 'партнёр', few: 'партнёра', many: 'партнёров', other: 'партнёра' },
  },
  en: {
    skip: 'Skip to content', loading: 'Loading…', language: 'Language',
    langName: { ru: 'Русский', en: 'English' },
    partnerSelf: 'My numbers', partnerOther: 'Partner numbers',
    mentorSelf: 'My group', mentorSelfMany: 'My groups', mentorOther: 'Mentor’s groups',
    team: 'Team', numbers: 'Numbers', week: 'Week', month: 'Month', lifetime: 'All time',
    since: 'since {date}', allNumbers: 'All numbers', asOf: 'as of {time}', noData: 'no data',
    previous: 'was {value}', previousWEEK: 'all of last week: {value}', previousMONTH: 'all of last month: {value}', change: 'change', pp: 'pp',
    ofCount: '{a} of {b}', of: 'of', updated: 'Updated',
    rank: 'Rank', enrolled: 'Joined {date}', pageDate: 'Date: {date}',
    goals: 'Goals', noGoals: 'No goals yet.', due: 'due {date}',
    goalStatus: { IN_PROGRESS: 'In progress', ACHIEVED: 'Achieved', MISSED: 'Missed' },
    nextSessions: 'Upcoming sessions', noSessions: 'No sessions planned yet.',
    sessionState: { SCHEDULED: 'Scheduled', COMPLETED: 'Completed', CANCELLED: 'Cancelled', MISSED: 'Missed' },
    journey: 'My journey', journeyOther: 'Journey', daysToFirstSale: 'Time to first sale',
    noFirstSale: 'No first sale yet', firstSale: 'First sale', currentRank: 'Current rank',
    start: 'Start', afterDays: 'after {days}',
    activity: 'Activity, last 28 days', streak: 'Streak', inARow: '{days} in a row',
    activeOf: 'Active days: {a} of {b}', activeDay: 'active', quietDay: 'no activity',
    needsYou: 'Who needs me today', needsNone: 'All quiet today: nobody is waiting on you.',
    reason: {
      QUIET: 'Quiet for {days}', QUIET_NODAYS: 'Quiet for a while',
      MISSED_SESSION: 'Absent from a session', MISSED_MANY: 'Absent from {n} sessions', GOAL_BEHIND: 'Behind on a goal', NO_PLAN: 'No development plan',
    },
    places: '{a} of {b} places', programKind: { PILOT: 'Pilot', STANDARD: 'Standard' },
    mentees: 'Mentees', menteesCaption: 'Mentees of “{group}”: this week’s numbers and goals',
    mentee: 'Mentee', lastActive: 'Activity', quiet: 'Quiet {days}', never: 'not yet',
    noMentees: 'Nobody in this group yet.', noGroups: 'No groups yet.',
    hiddenMentees: 'The group’s numbers are hidden: it includes partners outside your team (hidden: {n}).',
    sessionsWeek: 'This week’s sessions', done: 'Done', missed: 'Missed', upcoming: 'Upcoming',
    cancelled: 'Cancelled', none: 'None.', attended: '{a} of {b} attended', invited: '{n} invited',
    feedback: 'Recent feedback', noFeedback: 'No feedback yet.', rating: 'Rated {r} of 5',
    teamSize: 'Team size: {n}', truncated: 'A large team: the distribution and retention cover the first {n} only.', leaders: 'Leaders this month', noLeaders: 'No results yet.',
    dynamics: 'Last 30 days', firstSaleTitle: 'Time to first sale',
    withoutSale: 'No sale yet: {n}', median: 'Median: {days}', partnersTotal: 'Partners: {n}',
    retention: 'Retention by week', retentionNone: 'Nobody in the team has been here a whole week after joining yet.', perDay: '{metric} per day, {from} to {to}: total {total}, peak {max} ({date}).',
    firstSaleSummary: 'Days to first sale, partners per interval: {list}.',
    retentionSummary: 'Share of partners active by week since joining: {list}.',
    weekN: 'Week {n}', weekShort: 'Wk {n}', date: 'Date', value: 'Value', interval: 'Days to sale',
    partnersCol: 'Partners', eligible: 'Eligible', activeCol: 'Active', share: 'Share', noSaleBar: 'none',
    live: 'Live', reconnecting: 'Reconnecting…', stopped: 'Live updates stopped',
    retry: 'Try again', errorCode: 'Code: {code}',
    errors: {
      DASHBOARD_LINK_INVALID: ['This link is not valid', 'The link is incomplete or was changed. Open the dashboard again from your back office.'],
      DASHBOARD_LINK_EXPIRED: ['This link has expired', 'Open the dashboard again from your back office to get a fresh link.'],
      DASHBOARD_FORBIDDEN: ['No access', 'This link does not open this page.'],
      DASHBOARD_LINK_MISSING: ['Open this page from your back office', 'The address has no access key. Open the dashboard from your back office.'],
      DASHBOARD_PAGE_UNKNOWN: ['No such page', 'Check the address or open the dashboard from your back office.'],
      DASHBOARD_DATE_INVALID: ['Wrong date', 'The date in the address must look like YYYY-MM-DD.'],
      DASHBOARDS_NOT_CONFIGURED: ['Dashboards are not set up', 'Please contact your company’s administrator.'],
      DASHBOARD_UNAVAILABLE: ['Data temporarily unavailable', 'Please try again in a minute.'],
      NETWORK: ['Cannot reach the server', 'Check your connection and try again.'],
      BAD_DATA: ['Cannot show the data', 'The server sent an answer this page does not understand. Try again later.'],
      SERVER: ['Something went wrong', 'The server could not prepare the data. Try again in a moment.'],
    },
    metrics: {
      RECRUITS: 'Recruits', SALES_VOLUME: 'Sales volume (PV)', ORDERS: 'Orders',
      MODULES_COMPLETED: 'Modules completed', LEARNING_MINUTES: 'Learning minutes',
      EVENTS_ATTENDED: 'Events attended', SESSIONS_COMPLETED: 'Sessions completed',
      SESSIONS_MISSED: 'Sessions missed', FEEDBACK_AVG: 'Average rating', FEEDBACK_COUNT: 'Ratings received',
      RANK_ADVANCEMENTS: 'Rank advancements', ACTIVE_DAYS: 'Active days', GROUP_SIZE: 'Group size',
      RETENTION_30D: '30-day retention', FEEDBACK_SUM: 'Rating total', PARTNERS: 'Partners',
      TEAM_DEPTH: 'Team depth',
    },
    days: { one: 'day', other: 'days' },
    ratings: { one: 'rating', other: 'ratings' },
    partners: { one: 'partner', other: 'partners' },
  },
};

// Number formatting per locale: thousands separator, decimal mark, percent suffix.
const NUMBER_STYLE = {
  ru: { group: '\u00a0', decimal: ',', percent: '\u00a0%' },
  en: { group: ',', decimal: '.', percent: '%' },
};

// ---------------------------------------------------------------------------------------------
// Context: which page, whose, which day, which language.

const ctx = resolveContext();
const state = { live: null, charts: [] };
let uidCounter = 0;

function resolveContext() {
  const path = location.pathname.split('/').filter(Boolean); // dashboard / {page} / {id}
  const isDate = (v) => /^\d{4}-\d{2}-\d{2}$/.test(v || '');
  const filled = (v) => v && !v.includes('{{');
  const page = PAGES.includes(html.dataset.page) ? html.dataset.page : path[1];
  const subject = filled(html.dataset.subject) ? html.dataset.subject : decodeURIComponent(path[2] || '');
  const date = isDate(html.dataset.date) ? html.dataset.date : isDate(params.get('date')) ? params.get('date') : '';
  const wanted = params.get('lang');
  const lang = LANGS.includes(wanted) ? wanted : LANGS.includes(html.lang) ? html.lang : 'ru';
  // Times are shown in the tenant's time zone, the one its days and weeks are counted in.
  const timeZone = filled(html.dataset.timeZone) ? html.dataset.timeZone : undefined;
  return { page, subject, date, lang, timeZone, token: params.get('token') || '' };
}

function t(key, vars = {}) {
  const value = key.split('.').reduce((o, k) => (o == null ? o : o[k]), STRINGS[ctx.lang]);
  const text = typeof value === 'string' ? value : key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (vars[name] ?? ''));
}

// "5 дней", "1 day": the number grouped, the noun agreeing with it.
function countOf(n, noun) {
  const forms = STRINGS[ctx.lang][noun];
  const rule = new Intl.PluralRules(ctx.lang).select(Number(n));
  return `${formatDecimal(String(n))}\u00a0${forms[rule] ?? forms.other}`;
}

const metricName = (metric) => STRINGS[ctx.lang].metrics[metric] ?? metric;
// Enums arrive as "completed", "COMPLETED" or "SESSION_STATE_COMPLETED": one spelling.
const enumTail = (value, prefix) => String(value ?? '').toUpperCase().replace(prefix, '');
const uid = (prefix) => `${prefix}-${++uidCounter}`;

// ---------------------------------------------------------------------------------------------
// Exact decimals: formatted and compared as strings or BigInts, never through a float.

function splitDecimal(text) {
  const m = /^\s*([+-]?)(\d*)(?:\.(\d*))?\s*$/.exec(String(text));
  if (!m || (m[2] === '' && !m[3])) return null;
  return { neg: m[1] === '-', int: (m[2] || '0').replace(/^0+(?=\d)/, ''), frac: m[3] || '' };
}

function formatDecimal(text) {
  const parts = splitDecimal(text);
  if (!parts) return String(text);
  const style = NUMBER_STYLE[ctx.lang];
  const int = parts.int.replace(/\B(?=(\d{3})+(?!\d))/g, style.group);
  return (parts.neg ? '-' : '') + int + (parts.frac ? style.decimal + parts.frac : '');
}

// "0.6667" → "66.67": the decimal point moved two places, digits untouched.
function shiftPercent(text) {
  const parts = splitDecimal(text);
  if (!parts) return String(text);
  const frac = parts.frac.padEnd(2, '0');
  const int = (parts.int + frac.slice(0, 2)).replace(/^0+(?=\d)/, '');
  const rest = frac.slice(2);
  return (parts.neg ? '-' : '') + int + (rest ? `.${rest}` : '');
}

const formatPercent = (fraction) => formatDecimal(shiftPercent(fraction)) + NUMBER_STYLE[ctx.lang].percent;

function toScaled(text) {
  const p = splitDecimal(text);
  return p && { n: BigInt((p.neg ? '-' : '') + p.int + p.frac), scale: p.frac.length };
}

function fromScaled(n, scale) {
  const digits = (n < 0n ? -n : n).toString().padStart(scale + 1, '0');
  const int = digits.slice(0, digits.length - scale);
  return (n < 0n ? '-' : '') + int + (scale ? `.${digits.slice(-scale)}` : '');
}

// a + sign·b exactly, at the larger of the two scales.
function decimalAdd(a, b, sign = 1n) {
  const x = toScaled(a), y = toScaled(b);
  if (!x || !y) return null;
  const scale = Math.max(x.scale, y.scale);
  const up = (v) => v.n * 10n ** BigInt(scale - v.scale);
  return fromScaled(up(x) + sign * up(y), scale);
}

// numerator / denominator as a percentage with `places` decimals, half up, exactly.
function countsPercent(numerator, denominator, places = 1) {
  const den = BigInt(denominator);
  if (den === 0n) return null;
  const q = (BigInt(numerator) * 10n ** BigInt(places + 2) * 2n + den) / (2n * den);
  return formatDecimal(fromScaled(q, places)) + NUMBER_STYLE[ctx.lang].percent;
}

const isNegative = (text) => splitDecimal(text)?.neg && /[1-9]/.test(String(text));
const isZero = (text) => !/[1-9]/.test(String(text));

// A metric value's exact string: `value` may be a string, a Decimal message or absent (a
// fraction with nothing to divide).
function rawValue(mv) {
  if (mv == null) return null;
  if (typeof mv === 'string' || typeof mv === 'number') return String(mv);
  const v = mv.value;
  if (v == null) return null;
  return typeof v === 'object' ? (v.value ?? null) : String(v);
}

function formatMetric(metric, value) {
  if (value == null || value === '') return '—';
  return metric === 'RETENTION_30D' ? formatPercent(value) : formatDecimal(value);
}

// ---------------------------------------------------------------------------------------------
// Dates and times.

const parseLocalDate = (d) => new Date(`${d}T00:00:00Z`); // a calendar day, read in UTC
const dayFormat = (opts) => new Intl.DateTimeFormat(ctx.lang, { timeZone: 'UTC', ...opts });

function formatDay(d, withYear = false) {
  if (!d) return '';
  const opts = { day: 'numeric', month: 'short' };
  if (withYear || String(d).slice(0, 4) !== (ctx.date || '').slice(0, 4)) opts.year = 'numeric';
  return dayFormat(opts).format(parseLocalDate(String(d).slice(0, 10)));
}

function addDays(d, n) {
  const x = parseLocalDate(d);
  x.setUTCDate(x.getUTCDate() + n);
  return x.toISOString().slice(0, 10);
}

// A timestamp's local calendar day (for a timestamp such as enrolledAt or submittedAt).
function localDay(iso) {
  if (/^\d{4}-\d{2}-\d{2}$/.test(String(iso))) return String(iso);
  const x = new Date(iso);
  if (Number.isNaN(x.getTime())) return String(iso).slice(0, 10);
  // en-CA writes YYYY-MM-DD.
  return new Intl.DateTimeFormat('en-CA', {
    timeZone: ctx.timeZone, year: 'numeric', month: '2-digit', day: '2-digit',
  }).format(x);
}

function formatTime(iso, seconds = false) {
  const opts = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZone: ctx.timeZone };
  if (seconds) opts.second = '2-digit';
  return new Intl.DateTimeFormat(ctx.lang, opts).format(new Date(iso));
}

function formatDateTime(iso) {
  const x = new Date(iso);
  if (Number.isNaN(x.getTime())) return String(iso ?? '');
  return new Intl.DateTimeFormat(ctx.lang, {
    weekday: 'short', day: 'numeric', month: 'short', timeZone: ctx.timeZone,
  }).format(x)
    + ', ' + formatTime(iso);
}

function asOfText(iso, short = false) {
  const x = new Date(iso);
  if (!iso || Number.isNaN(x.getTime())) return '';
  const today = localDay(new Date().toISOString());
  const day = localDay(iso);
  const time = formatTime(iso, true);
  const when = day === today ? time : `${formatDay(day)}, ${time}`;
  return short ? when : t('asOf', { time: when });
}

function windowRange(card) {
  const from = card?.from;
  if (!from) return '';
  switch (card.window) {
    case 'WEEK': return `${formatDay(from)} — ${formatDay(addDays(from, 6))}`;
    case 'MONTH': {
      const name = dayFormat({ month: 'long', year: 'numeric' }).format(parseLocalDate(from));
      return name.charAt(0).toUpperCase() + name.slice(1);
    }
    default: return t('since', { date: formatDay(from, true) });
  }
}

// ---------------------------------------------------------------------------------------------
// DOM helpers: every node through createElement / createElementNS, every text through
// textContent; attributes never carry styles.

function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

function svg(tag, attrs, ...children) {
  return fill(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);
}

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key === 'text') el.textContent = value;
    else el.setAttribute(key === 'className' ? 'class' : key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child != null && child !== false && child !== '') el.append(child);
  }
  return el;
}

function section(title, className, ...content) {
  const id = uid('s');
  return h('section', { class: `panel ${className || ''}`.trim(), 'aria-labelledby': id },
    h('h2', { id, text: title }), content);
}

const empty = (text) => h('p', { class: 'empty', text });
const badge = (text, tone) => h('span', { class: `badge badge-${tone}`, text });

// A link to another dashboard page with the same token, date and language choice.
function pageLink(page, id, text) {
  const q = new URLSearchParams();
  if (ctx.token) q.set('token', ctx.token);
  if (ctx.date) q.set('date', ctx.date);
  if (params.get('lang')) q.set('lang', ctx.lang);
  return h('a', { href: `/dashboard/${page}/${encodeURIComponent(id)}?${q}`, text });
}

// ---------------------------------------------------------------------------------------------
// Cards: numbers with live hooks.

const cardKey = (card) => `${card?.subject?.kind}:${card?.subject?.id}|${card?.window}`;

function cardValues(card) {
  const values = card?.values ?? {};
  return Array.isArray(values) ? Object.fromEntries(values.map((v) => [v.metric, v])) : values;
}

const orderMetrics = (metrics) => [...metrics].sort((a, b) =>
  (METRIC_ORDER.indexOf(a) + 1 || 99) - (METRIC_ORDER.indexOf(b) + 1 || 99));

function liveNumber(key, metric, value) {
  return h('span', { class: 'num', 'data-live': key, 'data-value': value ?? '', text: formatMetric(metric, value),
    title: value == null || value === '' ? t('noData') : null });
}

// The counts behind a fraction: "2 из 3" for retention, "12 оценок" for the average rating.
function fractionNote(metric, mv) {
  if (mv == null || mv.denominator == null) return '';
  if (metric === 'RETENTION_30D' && Number(mv.denominator) === 0) return t('noData');
  if (metric === 'RETENTION_30D') return t('ofCount', { a: formatDecimal(String(mv.numerator ?? 0)), b: formatDecimal(String(mv.denominator)) });
  if (metric === 'FEEDBACK_AVG') return countOf(mv.denominator, 'ratings');
  return '';
}

function asOfElement(key, iso) {
  return h('p', { class: 'as-of' }, h('time', { 'data-as-of': key, datetime: iso ?? '', text: asOfText(iso) }));
}

// One card as a section: the chosen metrics as tiles, the rest behind "All numbers".
// `previous` (a card) adds the previous period's value and the change to each tile.
function renderCard(card, { title, primary, previous }) {
  if (!card) return null;
  const key = cardKey(card);
  const values = cardValues(card);
  const shown = primary.filter((m) => m in values);
  const rest = orderMetrics(Object.keys(values).filter((m) => !shown.includes(m)));
  const prevValues = previous ? cardValues(previous) : null;
  const tile = (m, compact) => renderTile(key, m, values[m], prevValues && { card: previous, mv: prevValues[m] }, compact);
  const headingId = uid('card');
  return h('section', { class: 'card', 'aria-labelledby': headingId },
    h('div', { class: 'card-head' },
      h('h3', { id: headingId, text: title }),
      h('p', { class: 'card-range', text: windowRange(card) })),
    h('dl', { class: 'tiles' }, shown.map((m) => tile(m, false))),
    rest.length > 0 && h('details', { class: 'more' },
      h('summary', { text: t('allNumbers') }),
      h('dl', { class: 'tiles tiles-compact' }, rest.map((m) => tile(m, true)))),
    asOfElement(key, card.asOf));
}

function renderTile(cardKeyText, metric, mv, previous, compact) {
  const key = `${cardKeyText}|${metric}`;
  const value = rawValue(mv);
  const dd = h('dd', {}, liveNumber(key, metric, value),
    h('span', { class: 'tile-note', 'data-note-for': key, text: fractionNote(metric, mv) }));
  if (previous && !compact && !STATE_METRICS.has(metric)) dd.append(compareLine(key, metric, previous, value));
  return h('div', { class: compact ? 'tile tile-compact' : 'tile' }, h('dt', { text: metricName(metric) }), dd);
}

// Counts of now, whatever the window: nothing to compare with a previous period.
const STATE_METRICS = new Set(['PARTNERS', 'TEAM_DEPTH', 'GROUP_SIZE']);

// The previous whole period's value (the current one is still running) and the change.
function compareLine(key, metric, previous, value) {
  const prev = rawValue(previous.mv);
  const prevKey = `${cardKey(previous.card)}|${metric}`;
  const label = STRINGS[ctx.lang][`previous${previous.card.window}`] ? `previous${previous.card.window}` : 'previous';
  const delta = h('span', { class: 'delta', 'data-delta-for': key, 'data-base': prev ?? '' });
  setDelta(delta, metric, value);
  return h('span', { class: 'compare' },
    h('span', { 'data-previous': prevKey, 'data-value': prev ?? '', text: t(label, { value: formatMetric(metric, prev) }) }),
    ' ', h('span', { class: 'visually-hidden', text: `${t('change')}: ` }), delta);
}

// The change against the previous period, exact; retention in percentage points.
function setDelta(el, metric, value) {
  const base = el.dataset.base;
  const diff = value != null && base !== '' ? decimalAdd(value, base, -1n) : null;
  el.classList.remove('up', 'down', 'flat');
  if (diff == null) { el.textContent = ''; return; }
  const magnitude = diff.replace(/^-/, '');
  const shown = metric === 'RETENTION_30D' ? `${formatDecimal(shiftPercent(magnitude))}\u00a0${t('pp')}` : formatDecimal(magnitude);
  const sign = isZero(diff) ? '±' : isNegative(diff) ? '\u2212' : '+';
  el.textContent = sign + shown;
  el.classList.add(isZero(diff) ? 'flat' : isNegative(diff) ? 'down' : 'up');
}

// ---------------------------------------------------------------------------------------------
// Goals, sessions, lists shared by pages.

// A goal of `partnerId`'s plan; `[data-goal]` is replaced whole when a `goals` event comes.
function goalProgress(partnerId, goal, compact) {
  // ratio is for the bar (a number, or a decimal string); the figures come from the strings.
  const ratio = goal.ratio == null ? null : Math.min(1, Math.max(0, Number(goal.ratio) || 0));
  const id = uid('goal');
  const goalKey = `${partnerId}/${goal.goalId}`;
  const title = goal.description || metricName(goal.metric);
  const bar = h('progress', { max: '1', value: String(ratio ?? 0), 'aria-labelledby': id });
  const percent = ratio == null ? '' : formatDecimal(String(Math.round(ratio * 100))) + NUMBER_STYLE[ctx.lang].percent;
  const status = enumTail(goal.status, 'GOAL_STATUS_');
  const tone = { ACHIEVED: 'good', MISSED: 'bad' }[status] ?? 'neutral';
  const progress = liveNumber(`GOAL:${goalKey}|PROGRESS`, goal.metric, rawValue(goal.progress));
  const amounts = [progress, ` ${t('of')} ${formatMetric(goal.metric, rawValue(goal.target))}`];
  const item = { class: compact ? 'goal goal-compact' : 'goal', 'data-goal': goalKey };
  if (compact) {
    return h('li', item,
      h('span', { id, class: 'goal-title', text: title }), bar,
      h('span', { class: 'goal-figures' }, amounts, percent && ` · ${percent}`));
  }
  return h('li', item,
    h('div', { class: 'goal-head' }, h('span', { id, class: 'goal-title', text: title }),
      STRINGS[ctx.lang].goalStatus[status] && badge(t(`goalStatus.${status}`), tone)),
    bar,
    h('p', { class: 'goal-figures' },
      h('span', {}, `${metricName(goal.metric)}: `, amounts), h('span', { text: percent }),
      goal.dueAt && h('span', { text: t('due', { date: formatDay(localDay(goal.dueAt)) }) })));
}

function timeRange(startsAt, endsAt) {
  const text = formatDateTime(startsAt) + (endsAt ? `–${formatTime(endsAt)}` : '');
  return h('time', { datetime: startsAt, text });
}

function sessionItem(session, groupNames) {
  const stateName = enumTail(session.state, 'SESSION_STATE_');
  const invited = Array.isArray(session.invited) ? session.invited.length : session.invited;
  const attended = Array.isArray(session.attended) ? session.attended.length : session.attended;
  let note = '';
  if (stateName === 'COMPLETED' && invited != null) note = t('attended', { a: attended ?? 0, b: invited });
  else if (invited != null) note = t('invited', { n: invited });
  const group = groupNames?.size > 1 ? groupNames.get(session.groupId) : '';
  return h('li', { class: 'session', 'data-session': stateName, 'data-invited': invited, 'data-attended': attended },
    timeRange(session.startsAt, session.endsAt),
    h('span', { class: 'session-topic', text: session.topic || '—' }),
    h('span', { class: 'session-meta', text: [group, note].filter(Boolean).join(' · ') }));
}

// ---------------------------------------------------------------------------------------------
// Partner page.

const PARTNER_PRIMARY = ['SALES_VOLUME', 'ORDERS', 'RECRUITS', 'ACTIVE_DAYS', 'MODULES_COMPLETED', 'LEARNING_MINUTES'];

function renderPartner(data) {
  const partner = data.partner ?? {};
  const self = data.viewer?.partnerId === partner.id;
  const title = self ? t('partnerSelf') : t('partnerOther');
  const subtitle = [partner.displayName,
    partner.rankName && `${t('rank')}: ${partner.rankName}`,
    partner.enrolledAt && t('enrolled', { date: formatDay(localDay(partner.enrolledAt), true) })];
  return [
    pageHeader(title, subtitle),
    section(t('numbers'), 'panel-cards', h('div', { class: 'cards' },
      renderCard(data.week, { title: t('week'), primary: PARTNER_PRIMARY }),
      renderCard(data.month, { title: t('month'), primary: PARTNER_PRIMARY }),
      renderCard(data.lifetime, { title: t('lifetime'), primary: ['SALES_VOLUME', 'RECRUITS', 'ORDERS', 'RANK_ADVANCEMENTS'] }))),
    h('div', { class: 'columns' },
      section(t('goals'), '', data.goals?.length
        ? h('ul', { class: 'goals' }, data.goals.map((g) => goalProgress(data.partner?.id ?? ctx.subject, g, false))) : empty(t('noGoals'))),
      section(t('nextSessions'), '', data.nextSessions?.length
        ? h('ul', { class: 'sessions' }, data.nextSessions.map((s) => sessionItem(s))) : empty(t('noSessions')))),
    h('div', { class: 'columns' },
      section(self ? t('journey') : t('journeyOther'), '', renderJourney(data.journey, partner)),
      section(t('activity'), '', renderActivity(data.activity))),
  ];
}

function pageHeader(title, subtitleParts) {
  document.title = `${[title, subtitleParts[0]].filter(Boolean).join(' · ')} — Mentorstream`;
  return h('header', { class: 'page-head' }, h('h1', { text: title }),
    h('p', { class: 'page-sub' }, subtitleParts.filter(Boolean).map((p) => h('span', { text: p }))),
    ctx.date && h('p', { class: 'page-date', text: t('pageDate', { date: formatDay(ctx.date, true) }) }));
}

function renderJourney(journey, partner) {
  if (!journey) return empty(t('noData'));
  const days = journey.daysToFirstSale;
  const stats = h('dl', { class: 'stats' },
    h('div', {}, h('dt', { text: t('daysToFirstSale') }),
      h('dd', { text: days != null ? countOf(days, 'days') : t('noFirstSale') })),
    partner.rankName && h('div', {}, h('dt', { text: t('currentRank') }), h('dd', { text: partner.rankName })));
  // Start, first sale and ranks as one timeline in date order.
  const steps = [{ at: journey.enrolledAt, label: t('start') }];
  if (journey.firstSaleAt) steps.push({ at: journey.firstSaleAt, label: t('firstSale'), note: days, tone: 'sale' });
  for (const r of journey.ranks ?? []) {
    steps.push({ at: r.reachedAt, label: r.name || `${t('rank')} ${r.level}`, note: r.daysToRank,
      tone: r.level === partner.rankLevel ? 'current' : 'rank' });
  }
  steps.sort((a, b) => String(a.at).localeCompare(String(b.at)));
  const timeline = h('ol', { class: 'timeline' }, steps.filter((s) => s.at).map((s) => h('li', { class: `step step-${s.tone || 'start'}` },
    h('span', { class: 'step-label', text: s.label }),
    h('time', { datetime: s.at, text: formatDay(localDay(s.at), true) }),
    Number(s.note) > 0 && h('span', { class: 'step-note', text: t('afterDays', { days: countOf(s.note, 'days') }) }))));
  return [stats, timeline, asOfElement(`JOURNEY:${partner.id}`, journey.asOf)];
}

function renderActivity(activity) {
  const days = activity?.days ?? [];
  if (!days.length) return empty(t('noData'));
  const active = days.filter((d) => d.active).length;
  // Monday-first columns: the first cell starts under its weekday.
  const weekday = (d) => (parseLocalDate(d).getUTCDay() + 6) % 7 + 1;
  const names = [0, 1, 2, 3, 4, 5, 6].map((i) => dayFormat({ weekday: 'short' }).format(parseLocalDate(addDays('2024-01-01', i))));
  const grid = h('ol', { class: 'activity-grid', 'aria-label': t('activeOf', { a: active, b: days.length }) },
    days.map((d, i) => h('li', {
      class: ['day', d.active ? 'day-active' : '', i === 0 ? `start-${weekday(d.date)}` : '', d.date === ctx.date ? 'day-today' : ''].filter(Boolean).join(' '),
      title: `${formatDay(d.date)}: ${d.active ? t('activeDay') : t('quietDay')}`,
      'data-day': d.date,
    }, h('span', { class: 'visually-hidden', text: `${formatDay(d.date)}: ${d.active ? t('activeDay') : t('quietDay')}` }))));
  return [
    h('dl', { class: 'stats' },
      h('div', {}, h('dt', { text: t('streak') }), h('dd', { text: t('inARow', { days: countOf(activity.streak ?? 0, 'days') }) })),
      h('div', {}, h('dt', { text: metricName('ACTIVE_DAYS') }), h('dd', { text: t('ofCount', { a: active, b: days.length }) }))),
    h('div', { class: 'activity' },
      h('ol', { class: 'weekdays', 'aria-hidden': 'true' }, names.map((n) => h('li', { text: n }))), grid),
  ];
}

// ---------------------------------------------------------------------------------------------
// Mentor page.

const GROUP_WEEK = ['SALES_VOLUME', 'RECRUITS', 'ACTIVE_DAYS', 'SESSIONS_COMPLETED', 'SESSIONS_MISSED', 'FEEDBACK_AVG'];
const GROUP_LIFETIME = ['GROUP_SIZE', 'RETENTION_30D', 'FEEDBACK_AVG', 'SESSIONS_COMPLETED', 'SESSIONS_MISSED', 'SALES_VOLUME'];
const MENTEE_COLUMNS = ['SALES_VOLUME', 'ORDERS', 'RECRUITS', 'ACTIVE_DAYS', 'SESSIONS_COMPLETED', 'LEARNING_MINUTES'];

function renderMentor(data) {
  const mentor = data.mentor ?? {};
  const groups = data.groups ?? [];
  const self = data.viewer?.partnerId === mentor.id;
  const title = self ? (groups.length > 1 ? t('mentorSelfMany') : t('mentorSelf')) : t('mentorOther');
  const groupNames = new Map(groups.map((g) => [g.groupId, g.name]));
  return [
    pageHeader(title, [mentor.displayName]),
    section(t('needsYou'), 'panel-needs', renderNeedsYou(data.needsYou ?? [])),
    groups.length ? groups.map(renderGroup) : section(t('mentees'), '', empty(t('noGroups'))),
    section(t('sessionsWeek'), '', renderWeekSessions(data.sessions ?? [], groupNames)),
    section(t('feedback'), '', renderFeedback(data.feedback ?? [])),
  ];
}

function renderNeedsYou(items) {
  if (!items.length) return empty(t('needsNone'));
  return h('ul', { class: 'needs' }, items.map((item) => {
    const reason = enumTail(item.reason, 'NEEDS_YOU_REASON_');
    let text = t(`reason.${reason}`);
    if (reason === 'QUIET') text = item.days != null ? t('reason.QUIET', { days: countOf(item.days, 'days') }) : t('reason.QUIET_NODAYS');
    // For MISSED_SESSION `days` counts the sessions missed this week.
    if (reason === 'MISSED_SESSION' && Number(item.days) > 1) text = t('reason.MISSED_MANY', { n: item.days });
    return h('li', { class: `need need-${reason.toLowerCase()}`, 'data-need': `${item.menteeId}:${reason}` },
      pageLink('partner', item.menteeId, item.menteeName || item.menteeId),
      h('span', { class: 'need-reason', text }));
  }));
}

function renderGroup(group) {
  const kind = enumTail(group.programKind, 'PROGRAM_KIND_');
  const size = rawValue(cardValues(group.lifetime).GROUP_SIZE ?? cardValues(group.week).GROUP_SIZE)
    ?? String((group.mentees?.length ?? 0) + (group.hiddenMentees ?? 0));
  const meta = h('p', { class: 'group-meta' },
    group.programName && h('span', { text: group.programName }),
    kind && STRINGS[ctx.lang].programKind[kind] && badge(t(`programKind.${kind}`), kind === 'PILOT' ? 'accent' : 'neutral'),
    group.capacity != null && h('span', { text: t('places', { a: formatDecimal(size), b: group.capacity }) }));
  const tableId = uid('mentees');
  const part = section(group.name || group.groupId, 'panel-group',
    meta,
    group.hiddenMentees > 0 && h('p', { class: 'empty', 'data-hidden-mentees': String(group.hiddenMentees),
      text: t('hiddenMentees', { n: group.hiddenMentees }) }),
    h('div', { class: 'cards' },
      renderCard(group.week, { title: t('week'), primary: GROUP_WEEK }),
      renderCard(group.lifetime, { title: t('lifetime'), primary: GROUP_LIFETIME })),
    h('h3', { id: tableId, text: t('mentees') }),
    group.mentees?.length ? renderMenteeTable(group, tableId) : !(group.hiddenMentees > 0) && empty(t('noMentees')));
  // Every group has a "Week" card: name the regions after the group too, so they differ.
  const groupHeading = part.querySelector('h2').id;
  for (const region of part.querySelectorAll('.card, .table-wrap')) {
    region.setAttribute('aria-labelledby', `${region.getAttribute('aria-labelledby')} ${groupHeading}`);
  }
  return part;
}

function renderMenteeTable(group, labelId) {
  const present = new Set(group.mentees.flatMap((m) => Object.keys(cardValues(m.week))));
  const columns = MENTEE_COLUMNS.filter((m) => present.has(m));
  const head = h('tr', {}, h('th', { scope: 'col', text: t('mentee') }), h('th', { scope: 'col', text: t('lastActive') }),
    columns.map((m) => h('th', { scope: 'col', class: 'num-col', text: metricName(m) })),
    h('th', { scope: 'col', text: t('goals') }), h('th', { scope: 'col', text: t('updated') }));
  const rows = group.mentees.map((m) => {
    const key = m.week ? cardKey(m.week) : `PARTNER:${m.id}|WEEK`;
    const values = cardValues(m.week);
    const activity = m.quiet
      ? badge(m.quietDays != null ? t('quiet', { days: countOf(m.quietDays, 'days') }) : t('reason.QUIET_NODAYS'), 'warn')
      : h('span', { text: m.lastActive ? formatDay(localDay(m.lastActive)) : t('never') });
    // data-label: on a phone each row is a block and every cell names its column.
    return h('tr', { class: m.quiet ? 'row-quiet' : null },
      h('th', { scope: 'row' }, pageLink('partner', m.id, m.displayName || m.id)),
      h('td', { 'data-label': t('lastActive') }, activity),
      columns.map((c) => h('td', { class: 'num-col', 'data-label': metricName(c) }, liveNumber(`${key}|${c}`, c, rawValue(values[c])))),
      h('td', { class: 'goals-cell', 'data-label': t('goals') }, m.goals?.length
        ? h('ul', { class: 'goals goals-compact' }, m.goals.map((g) => goalProgress(m.id, g, true))) : '—'),
      // The column says "Updated": the cell shows the time alone.
      h('td', { class: 'as-of-cell', 'data-label': t('updated') }, h('time', { 'data-as-of': key, 'data-short': '', datetime: m.week?.asOf ?? '', text: asOfText(m.week?.asOf, true) })));
  });
  // Focusable: a keyboard can scroll the table where it is wider than the screen.
  return h('div', { class: 'table-wrap', role: 'region', tabindex: '0', 'aria-labelledby': labelId },
    h('table', { class: 'mentees' },
      h('caption', { class: 'visually-hidden', text: t('menteesCaption', { group: group.name || group.groupId }) }),
      h('thead', {}, head), h('tbody', {}, rows)));
}

function renderWeekSessions(sessions, groupNames) {
  const byState = { COMPLETED: [], MISSED: [], SCHEDULED: [], CANCELLED: [] };
  for (const s of sessions) byState[enumTail(s.state, 'SESSION_STATE_')]?.push(s);
  const column = (title, list, tone) => h('div', { class: `session-col session-col-${tone}` },
    h('h3', {}, title, ' ', h('span', { class: 'count', text: String(list.length) })),
    list.length ? h('ul', { class: 'sessions' }, list.map((s) => sessionItem(s, groupNames))) : empty(t('none')));
  return h('div', { class: 'session-cols' },
    column(t('done'), byState.COMPLETED, 'done'),
    column(t('missed'), byState.MISSED, 'missed'),
    column(t('upcoming'), byState.SCHEDULED, 'upcoming'),
    byState.CANCELLED.length > 0 && column(t('cancelled'), byState.CANCELLED, 'cancelled'));
}

function renderFeedback(items) {
  if (!items.length) return empty(t('noFeedback'));
  return h('ul', { class: 'feedback' }, items.map((f) => {
    const rating = Math.max(0, Math.min(5, Number(f.rating) || 0));
    return h('li', { class: 'feedback-item', 'data-feedback': f.menteeId, 'data-rating': rating },
      h('p', { class: 'feedback-head' },
        h('span', { class: 'stars', 'aria-hidden': 'true', text: '★'.repeat(rating) + '☆'.repeat(5 - rating) }),
        h('span', { class: 'visually-hidden', text: `${t('rating', { r: rating })}. ` }),
        h('span', { class: 'feedback-name', text: f.menteeName || f.menteeId }),
        f.submittedAt && h('time', { datetime: f.submittedAt, text: formatDay(localDay(f.submittedAt)) })),
      f.comment && h('blockquote', { text: f.comment }));
  }));
}

// ---------------------------------------------------------------------------------------------
// Team page.

const TEAM_PRIMARY = ['SALES_VOLUME', 'ORDERS', 'RECRUITS', 'ACTIVE_DAYS', 'PARTNERS', 'RANK_ADVANCEMENTS'];

function renderTeam(data) {
  const root = data.root ?? {};
  const size = data.teamSize != null ? t('teamSize', { n: countOf(data.teamSize, 'partners') }) : '';
  return [
    pageHeader(t('team'), [root.displayName, size]),
    data.truncated && h('p', { class: 'banner banner-info', text: t('truncated', { n: countOf(data.teamSize, 'partners') }) }),
    section(t('numbers'), 'panel-cards', h('div', { class: 'cards cards-2' },
      renderCard(data.week, { title: t('week'), primary: TEAM_PRIMARY, previous: data.previousWeek }),
      renderCard(data.month, { title: t('month'), primary: TEAM_PRIMARY, previous: data.previousMonth }))),
    renderTeamTables(data),
  ];
}

// Leaderboards, series, first sales and retention: drawn from one answer, drawn again from a
// fresh one when the team's cards move (refreshTeamTables).
function renderTeamTables(data) {
  return h('div', { id: 'team-tables' },
    section(t('leaders'), '', renderLeaderboards(data.leaderboards ?? [])),
    section(t('dynamics'), '', h('div', { class: 'charts' }, (data.series ?? []).map(seriesFigure))),
    h('div', { class: 'columns' },
      section(t('firstSaleTitle'), '', firstSaleFigure(data.firstSale)),
      section(t('retention'), '', retentionFigure(data.retention))));
}

// The team page's tables follow its cards: a moved team card asks for the page's data again,
// a second after the first card (week, month and lifetime come together) and then at most
// every TABLES_EVERY_MS; not while the keyboard is inside them (focus would be lost).
const TABLES_AFTER_MS = 1000;
const TABLES_EVERY_MS = 10_000;
const tables = { timer: null, last: 0, busy: false, stopped: false };

function scheduleTeamTables() {
  if (ctx.page !== 'team' || tables.timer || tables.stopped) return;
  const wait = Math.max(TABLES_AFTER_MS, tables.last + TABLES_EVERY_MS - Date.now());
  tables.timer = setTimeout(refreshTeamTables, wait);
}

// One refresh at a time; what the keyboard is in is never redrawn (it is tried again later).
async function refreshTeamTables() {
  tables.timer = null;
  if (tables.busy) { scheduleTeamTables(); return; }
  const focused = () => document.getElementById('team-tables')?.contains(document.activeElement);
  if (focused()) { tables.last = Date.now(); scheduleTeamTables(); return; }
  tables.busy = true;
  try {
    const response = await fetch(dataUrl(), { headers: dataHeaders(), cache: 'no-store' });
    // Not ok: the cards still move, and the next change tries again.
    const data = response.ok ? await response.json() : null;
    const old = document.getElementById('team-tables');
    if (!data || !old?.isConnected || tables.stopped) return;
    if (focused()) { scheduleTeamTables(); return; }
    state.charts = state.charts.filter((chart) => !old.contains(chart.slot));
    old.replaceWith(renderTeamTables(data)); // registers its own charts
    drawCharts(true);
  } catch {
    // A network error: the next change tries again.
  } finally {
    tables.busy = false;
    tables.last = Date.now();
  }
}

function renderLeaderboards(boards) {
  if (!boards.length) return empty(t('noLeaders'));
  return h('div', { class: 'boards' }, boards.map((board) => {
    const id = uid('board');
    return h('section', { class: 'board', 'aria-labelledby': id, 'data-leaderboard': board.metric },
      h('h3', { id, text: metricName(board.metric) }),
      board.entries?.length ? h('ol', { class: 'leaderboard' }, board.entries.map((e) => h('li', {
        value: e.rank, class: e.rank <= 3 ? 'top' : null, 'data-partner': e.partnerId, 'data-value': rawValue(e.value) ?? '' },
        h('span', { class: 'rank', text: String(e.rank) }),
        pageLink('partner', e.partnerId, e.displayName || e.partnerId),
        h('span', { class: 'board-value', text: formatMetric(board.metric, rawValue(e.value)) }))))
        : empty(t('noLeaders')),
      asOfElement(`LEADERBOARD:${board.metric}|${board.window ?? 'MONTH'}`, board.asOf));
  }));
}

// ---------------------------------------------------------------------------------------------
// Charts: SVG drawn at the container's width (redrawn on resize), colours from CSS classes,
// each with role="img", an aria-label summary and a visually hidden table of the same numbers.

function chartFigure(title, ariaLabel, draw, table, note) {
  const id = title ? uid('chart') : null;
  const slot = h('div', { class: 'chart-slot' });
  state.charts.push({ slot, draw, ariaLabel, width: 0 });
  return h('figure', { class: 'chart', 'aria-labelledby': id },
    title && h('h3', { id, text: title }), note && h('p', { class: 'chart-note', text: note }), slot, table);
}

function drawCharts(force) {
  for (const chart of state.charts) {
    const width = Math.max(260, Math.floor(chart.slot.clientWidth));
    if (!force && Math.abs(width - chart.width) < 4) continue;
    chart.width = width;
    const el = chart.draw(width);
    el.setAttribute('role', 'img');
    el.setAttribute('aria-label', chart.ariaLabel);
    chart.slot.replaceChildren(el);
  }
}

// rowAttrs(i) adds attributes (test hooks) to the i-th row.
function dataTable(caption, headers, rows, rowAttrs = () => ({})) {
  // Hidden through a wrapper: a table's own height cannot shrink below its rows.
  return h('div', { class: 'visually-hidden' }, h('table', {}, h('caption', { text: caption }),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', text: x })))),
    h('tbody', {}, rows.map((r, n) => h('tr', rowAttrs(n), r.map((c, i) => h(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row', text: c } : { text: c })))))));
}

// Round axis ticks (1, 2, 2.5, 5 × 10^k) covering [lo, hi]; geometry only, never a value shown.
function niceTicks(lo, hi, integer) {
  const raw = (hi - lo) / 4 || 1;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw);
  if (integer) step = Math.max(1, Math.round(step));
  const places = Math.max(0, -Math.floor(Math.log10(step)) + (step % 1 ? 1 : 0));
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toFixed(places)));
  if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toFixed(places)));
  return ticks;
}

// points: [{label, y (number|null), text}] in x order; tick(v) formats an axis value.
function drawLineChart(width, { points, integer, fixedMax, tick, area = true }) {
  const height = width < 480 ? 190 : 230;
  const ys = points.map((p) => p.y).filter((v) => v != null);
  const ticks = niceTicks(Math.min(0, ...ys), Math.max(fixedMax ?? 0, ...ys, integer ? 1 : 0), integer);
  const lo = ticks[0], hi = ticks[ticks.length - 1];
  const labelWidth = Math.max(...ticks.map((v) => tick(v).length)) * 7 + 10;
  const pad = { l: labelWidth, r: 14, t: 12, b: 28 };
  const innerW = width - pad.l - pad.r, innerH = height - pad.t - pad.b;
  const x = (i) => pad.l + (points.length > 1 ? (i * innerW) / (points.length - 1) : innerW / 2);
  const y = (v) => pad.t + ((hi - v) / (hi - lo || 1)) * innerH;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'chart-svg', focusable: 'false' });
  for (const v of ticks) {
    root.append(svg('line', { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: v === 0 ? 'axis' : 'grid' }),
      svg('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end', text: tick(v) }));
  }
  // Consecutive known points form a segment; a null breaks the line.
  const segments = [];
  points.forEach((p, i) => {
    if (p.y == null) { segments.push([]); return; }
    if (!segments.length) segments.push([]);
    segments[segments.length - 1].push([x(i), y(p.y)]);
  });
  for (const seg of segments.filter((s) => s.length)) {
    const line = seg.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`).join('');
    if (area && seg.length > 1) {
      const base = y(Math.max(lo, 0)).toFixed(1);
      root.append(svg('path', { d: `${line}L${seg[seg.length - 1][0].toFixed(1)},${base}L${seg[0][0].toFixed(1)},${base}Z`, class: 'area' }));
    }
    root.append(svg('path', { d: line, class: 'line' }));
  }
  points.forEach((p, i) => {
    if (p.y == null) return;
    const last = i === points.length - 1;
    root.append(svg('circle', { cx: x(i), cy: y(p.y), r: last ? 4 : 2.5, class: last ? 'dot dot-last' : 'dot' },
      svg('title', { text: `${p.label}: ${p.text}` })));
  });
  const labelAt = [0, Math.floor((points.length - 1) / 2), points.length - 1].filter((v, i, a) => a.indexOf(v) === i);
  for (const i of labelAt) {
    const anchor = points.length === 1 ? 'middle' : i === 0 ? 'start' : i === points.length - 1 ? 'end' : 'middle';
    root.append(svg('text', { x: x(i), y: height - 8, 'text-anchor': anchor, text: points[i].label }));
  }
  return root;
}

function seriesFigure(series) {
  const points = (series.points ?? []).map((p) => ({ date: p.date, raw: rawValue(p.value) }));
  if (!points.length) return null;
  const total = points.reduce((sum, p) => (p.raw == null ? sum : decimalAdd(sum, p.raw) ?? sum), '0');
  const peak = points.reduce((best, p) => (p.raw != null && (best == null || Number(p.raw) > Number(best.raw)) ? p : best), null);
  const metric = series.metric;
  const summary = t('perDay', {
    metric: metricName(metric), from: formatDay(points[0].date), to: formatDay(points[points.length - 1].date),
    total: formatMetric(metric, total), max: formatMetric(metric, peak?.raw), date: formatDay(peak?.date),
  });
  const integer = points.every((p) => p.raw == null || !String(p.raw).includes('.'));
  const chartPoints = points.map((p) => ({ label: formatDay(p.date), y: p.raw == null ? null : Number(p.raw), text: formatMetric(metric, p.raw) }));
  const table = dataTable(summary, [t('date'), metricName(metric)], points.map((p) => [formatDay(p.date), formatMetric(metric, p.raw)]));
  const figure = chartFigure(metricName(metric), summary,
    (w) => drawLineChart(w, { points: chartPoints, integer, tick: (v) => formatDecimal(String(v)) }), table);
  figure.append(asOfElement(`SERIES:${metric}|DAY`, series.asOf));
  return figure;
}

function retentionFigure(retention) {
  const points = retention?.points ?? [];
  if (!points.length) return empty(t('noData'));
  if (!points.some((p) => Number(p.eligible) > 0)) return empty(t('retentionNone'));
  // Weeks after enrolment count from 0 in the data; people count them from 1.
  const first = points.some((p) => Number(p.week) === 0) ? 1 : 0;
  const weekLabel = (w, short) => (/^\d+$/.test(String(w)) ? t(short ? 'weekShort' : 'weekN', { n: Number(w) + first }) : String(w));
  const share = (p) => (Number(p.eligible) > 0 ? countsPercent(p.active ?? 0, p.eligible) : null);
  const ratioText = (p) => share(p) ?? '—';
  const summary = t('retentionSummary', { list: points.map((p) => `${weekLabel(p.week)} — ${ratioText(p)}`).join('; ') });
  const chartPoints = points.map((p) => ({ label: weekLabel(p.week, true),
    y: share(p) == null ? null : Number(p.active) / Number(p.eligible), text: ratioText(p) }));
  const table = dataTable(t('retention'), [t('weekN', { n: '' }).trim(), t('eligible'), t('activeCol'), t('share')],
    points.map((p) => [weekLabel(p.week), formatDecimal(String(p.eligible ?? 0)), formatDecimal(String(p.active ?? 0)), ratioText(p)]));
  return chartFigure(null, summary,
    (w) => drawLineChart(w, { points: chartPoints, fixedMax: 1, tick: (v) => formatPercent(String(v)).replace(/[.,]0+(?=\D)/, ''), area: true }),
    table);
}

function firstSaleFigure(firstSale) {
  const buckets = firstSale?.buckets ?? [];
  if (!buckets.length) return empty(t('noData'));
  // `key` names a bucket for the hooks: its label, or "none" for those without a sale.
  const bars = buckets.map((b) => {
    const label = b.label ?? `${b.from}–${b.to ?? ''}`;
    return { key: label, label, count: Number(b.count) || 0, raw: String(b.count ?? 0) };
  });
  if (firstSale.withoutSale != null) {
    bars.push({ key: 'none', label: t('noSaleBar'), count: Number(firstSale.withoutSale) || 0, raw: String(firstSale.withoutSale), muted: true });
  }
  const summary = t('firstSaleSummary', { list: bars.map((b) => `${b.label}: ${formatDecimal(b.raw)}`).join('; ') });
  const note = [
    firstSale.median != null && t('median', { days: countOf(rawValue(firstSale.median), 'days') }),
    firstSale.partners != null && t('partnersTotal', { n: formatDecimal(String(firstSale.partners)) }),
    firstSale.withoutSale != null && t('withoutSale', { n: formatDecimal(String(firstSale.withoutSale)) }),
  ].filter(Boolean).join(' · ');
  const table = dataTable(t('firstSaleTitle'), [t('interval'), t('partnersCol')], bars.map((b) => [b.label, formatDecimal(b.raw)]),
    (i) => ({ 'data-first-sale': bars[i].key, 'data-count': bars[i].raw }));
  return chartFigure(null, `${summary} ${note}`, (w) => drawBarChart(w, bars), table, note);
}

function drawBarChart(width, bars) {
  const height = width < 480 ? 190 : 230;
  const ticks = niceTicks(0, Math.max(1, ...bars.map((b) => b.count)), true);
  const hi = ticks[ticks.length - 1];
  const pad = { l: Math.max(...ticks.map((v) => String(v).length)) * 7 + 12, r: 8, t: 18, b: 28 };
  const innerW = width - pad.l - pad.r, innerH = height - pad.t - pad.b;
  const slot = innerW / bars.length;
  const barW = Math.min(56, slot * 0.7);
  const y = (v) => pad.t + ((hi - v) / hi) * innerH;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'chart-svg', focusable: 'false' });
  for (const v of ticks) {
    root.append(svg('line', { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: v === 0 ? 'axis' : 'grid' }),
      svg('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end', text: formatDecimal(String(v)) }));
  }
  bars.forEach((b, i) => {
    const cx = pad.l + slot * i + slot / 2;
    root.append(
      svg('rect', { x: cx - barW / 2, y: y(b.count), width: barW, height: Math.max(0, y(0) - y(b.count)), rx: 3, class: b.muted ? 'bar bar-muted' : 'bar' },
        svg('title', { text: `${b.label}: ${formatDecimal(b.raw)}` })),
      svg('text', { x: cx, y: y(b.count) - 5, 'text-anchor': 'middle', class: 'bar-value', text: formatDecimal(b.raw) }),
      svg('text', { x: cx, y: height - 8, 'text-anchor': 'middle', text: b.label }));
  });
  return root;
}

// ---------------------------------------------------------------------------------------------
// Live updates.

function applyCard(card) {
  const key = cardKey(card);
  const values = cardValues(card);
  for (const el of document.querySelectorAll('[data-live]')) {
    const live = el.dataset.live;
    const cut = live.lastIndexOf('|');
    const metric = live.slice(cut + 1);
    if (live.slice(0, cut) !== key || !(metric in values)) continue;
    const value = rawValue(values[metric]);
    if (el.dataset.value === (value ?? '')) continue;
    el.dataset.value = value ?? '';
    el.textContent = formatMetric(metric, value);
    flash(el);
  }
  for (const el of document.querySelectorAll('[data-note-for], [data-delta-for]')) {
    const target = el.dataset.noteFor ?? el.dataset.deltaFor;
    const cut = target.lastIndexOf('|');
    const metric = target.slice(cut + 1);
    if (target.slice(0, cut) !== key || !(metric in values)) continue;
    if ('noteFor' in el.dataset) el.textContent = fractionNote(metric, values[metric]);
    else setDelta(el, metric, rawValue(values[metric]));
  }
  for (const el of document.querySelectorAll('[data-as-of]')) {
    if (el.dataset.asOf !== key || !card.asOf) continue;
    el.setAttribute('datetime', card.asOf);
    el.textContent = asOfText(card.asOf, 'short' in el.dataset);
  }
}

// A partner's goals as they are now: each shown goal is drawn again, its progress flashed
// when it moved.
function applyGoals(partnerId, goals) {
  for (const goal of goals) {
    const goalKey = `${partnerId}/${goal.goalId}`;
    for (const old of document.querySelectorAll(`[data-goal="${CSS.escape(goalKey)}"]`)) {
      const before = old.querySelector('[data-live]')?.dataset.value;
      const fresh = goalProgress(partnerId, goal, old.classList.contains('goal-compact'));
      old.replaceWith(fresh);
      const number = fresh.querySelector('[data-live]');
      if (number && number.dataset.value !== before) flash(number);
    }
  }
}

const flashTimers = new WeakMap();

// A short highlight of a changed number; the CSS makes it static under reduced motion.
function flash(el) {
  el.classList.remove('is-updated');
  void el.offsetWidth; // restart the animation
  el.classList.add('is-updated');
  clearTimeout(flashTimers.get(el));
  flashTimers.set(el, setTimeout(() => el.classList.remove('is-updated'), 2000));
}

function setLiveStatus(kind) {
  const el = document.getElementById('live-status');
  if (!el) return;
  el.className = `live-status live-${kind}`;
  el.textContent = t(kind);
}

function openLive() {
  if (state.live || typeof EventSource === 'undefined') return;
  const q = new URLSearchParams({ token: ctx.token });
  if (ctx.date) q.set('date', ctx.date);
  const source = new EventSource(`/dashboard/api/live/${ctx.page}/${encodeURIComponent(ctx.subject)}?${q}`);
  state.live = source;
  source.addEventListener('open', () => setLiveStatus('live'));
  source.addEventListener('error', () => setLiveStatus(source.readyState === EventSource.CLOSED ? 'stopped' : 'reconnecting'));
  source.addEventListener('card', (event) => {
    let card;
    try { card = JSON.parse(event.data); } catch { return; }
    if (card?.subject) applyCard(card);
    if (card?.subject?.kind === 'TEAM') scheduleTeamTables();
  });
  source.addEventListener('goals', (event) => {
    let body;
    try { body = JSON.parse(event.data); } catch { return; }
    if (body?.partnerId && Array.isArray(body.goals)) applyGoals(body.partnerId, body.goals);
  });
  source.addEventListener('gone', (event) => {
    let body = {};
    try { body = JSON.parse(event.data) ?? {}; } catch { /* the banner still shows */ }
    source.close();
    setLiveStatus('stopped');
    tables.stopped = true;
    clearTimeout(tables.timer);
    showGone(body.code || 'DASHBOARD_LINK_EXPIRED');
  });
}

function showGone(code) {
  const [title, text] = errorText(code);
  html.dataset.gone = code;
  const banner = h('div', { class: 'banner', role: 'alert', 'data-gone': code },
    h('strong', { text: title }), ' ', h('span', { text }));
  document.getElementById('main')?.prepend(banner);
}

// ---------------------------------------------------------------------------------------------
// Loading, errors, the language switch.

// [title, advice] in the page's language; an unknown code gets the generic pair.
const errorText = (code) => STRINGS[ctx.lang].errors[code] ?? STRINGS[ctx.lang].errors.SERVER;

function showError(code, message) {
  const main = document.getElementById('main');
  const [title, text] = errorText(code);
  const known = Boolean(STRINGS[ctx.lang].errors[code]);
  const retry = !known || ['NETWORK', 'SERVER', 'BAD_DATA', 'DASHBOARD_UNAVAILABLE'].includes(code);
  const button = retry ? h('button', { type: 'button', class: 'button', text: t('retry') }) : null;
  button?.addEventListener('click', () => load());
  main.replaceChildren(h('section', { class: 'error-panel', role: 'alert' },
    h('h1', { text: title }), h('p', { text }),
    // The server's own words (English, technical) only where we have none of our own.
    h('p', { class: 'error-code', text: t('errorCode', { code }) + (!known && message ? ` — ${message}` : '') }), button));
  main.removeAttribute('aria-busy');
  html.dataset.error = code;
  html.dataset.ready = 'error';
}

function statusCode(status) {
  if (status === 401) return 'DASHBOARD_LINK_INVALID';
  if (status === 403) return 'DASHBOARD_FORBIDDEN';
  if (status === 503) return 'DASHBOARD_UNAVAILABLE';
  return 'SERVER';
}

function renderLanguageSwitch() {
  const nav = document.getElementById('lang-switch');
  if (!nav) return;
  nav.setAttribute('aria-label', t('language'));
  nav.replaceChildren(...LANGS.map((lang) => {
    const q = new URLSearchParams(location.search);
    q.set('lang', lang);
    return h('a', { href: `${location.pathname}?${q}`, lang, hreflang: lang,
      'aria-current': lang === ctx.lang ? 'true' : null, text: STRINGS[ctx.lang].langName[lang] });
  }));
}

function applyChrome() {
  html.lang = ctx.lang;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  renderLanguageSwitch();
}

const RENDERERS = { partner: renderPartner, mentor: renderMentor, team: renderTeam };

function dataUrl() {
  const q = ctx.date ? `?${new URLSearchParams({ date: ctx.date })}` : '';
  return `/dashboard/api/${ctx.page}/${encodeURIComponent(ctx.subject)}${q}`;
}

function dataHeaders() {
  return { Authorization: `Bearer ${ctx.token}`, Accept: 'application/json' };
}

async function load() {
  const main = document.getElementById('main');
  main.setAttribute('aria-busy', 'true');
  main.replaceChildren(h('p', { class: 'loading', text: t('loading') }));
  delete html.dataset.error;
  if (!ctx.token) return showError('DASHBOARD_LINK_MISSING');
  if (!RENDERERS[ctx.page]) return showError('DASHBOARD_PAGE_UNKNOWN');
  let response;
  try {
    response = await fetch(dataUrl(), { headers: dataHeaders(), cache: 'no-store' });
  } catch {
    return showError('NETWORK');
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    return showError(body?.code || statusCode(response.status), body?.message);
  }
  let data;
  try {
    data = await response.json();
  } catch {
    return showError('BAD_DATA');
  }
  try {
    state.charts = [];
    main.replaceChildren(...[RENDERERS[ctx.page](data)].flat(Infinity).filter(Boolean));
    drawCharts(true);
  } catch (error) {
    console.error(error);
    return showError('BAD_DATA');
  }
  main.removeAttribute('aria-busy');
  html.dataset.ready = 'true';
  openLive();
}

let resizeTimer;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => drawCharts(false), 150);
});

applyChrome();
load();
