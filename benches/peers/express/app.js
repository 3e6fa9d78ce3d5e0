// The express-session tutorial app: form login (bcryptjs, cost 10), a
// read-only "who am I", and the visit counter. STORE=sqlite (WAL, via
// better-sqlite3-session-store) or STORE=memory (express-session's
// MemoryStore). resave: false, saveUninitialized: false, as the tutorials
// advise.
const express = require('express');
const session = require('express-session');
const bcrypt = require('bcryptjs');

let store;
if (process.env.STORE === 'sqlite') {
  const Database = require('better-sqlite3');
  const db = new Database(process.env.DB || 'express-sessions.db');
  db.pragma('journal_mode = WAL');
  const SqliteStore = require('better-sqlite3-session-store')(session);
  store = new SqliteStore({ client: db, expired: { clear: true, intervalMs: 900000 } });
}

const app = express();
app.use(express.urlencoded({ extended: false }));
app.use(session({
  secret: 'benchmark secret, not for production',
  resave: false,
  saveUninitialized: false,
  store,
  cookie: { httpOnly: true, sameSite: 'lax' },
}));

const HASH = bcrypt.hashSync('correct horse', 10);

app.post('/login', async (req, res) => {
  const ok = req.body.username === 'alice' && await bcrypt.compare(req.body.password || '', HASH);
  if (!ok) return res.status(401).send('wrong username or password');
  req.session.regenerate(() => {
    req.session.user = 'alice';
    res.redirect(303, '/');
  });
});

app.get('/whoami', (req, res) => {
  if (!req.session.user) return res.status(401).send('not signed in');
  res.set('Remote-User', req.session.user).send('ok');
});

app.get('/', (req, res) => {
  if (!req.session.user) return res.redirect(303, '/login');
  req.session.views = (req.session.views || 0) + 1;
  res.send(`Welcome, ${req.session.user}. Visits: ${req.session.views}`);
});

const server = app.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
