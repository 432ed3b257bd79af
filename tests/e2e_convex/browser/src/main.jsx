// A small chat on ConvexReactClient against `livedb serve`: sign-in through livedb's
// PasswordAuth, useQuery, usePaginatedQuery, useMutation with an optimistic update.
// Open it as index.html?convex=http://127.0.0.1:3210
import { createContext, StrictMode, useCallback, useContext, useMemo, useState }
  from "react";
import { createRoot } from "react-dom/client";
import {
  ConvexProviderWithAuth,
  ConvexReactClient,
  insertAtTop,
  useConvexAuth,
  useMutation,
  usePaginatedQuery,
  useQuery,
} from "convex/react";
import { anyApi as api } from "convex/server";
import "./style.css";

const params = new URLSearchParams(window.location.search);
const address = params.get("convex") ?? "http://127.0.0.1:3210";
const channel = params.get("channel") ?? "general";
const convex = new ConvexReactClient(address);

async function post(path, body) {
  const reply = await fetch(`${address}/api/auth/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await reply.json();
  if (!reply.ok) throw new Error(data.error ?? `HTTP ${reply.status}`);
  return data;
}

// The session token (long-lived) is exchanged for a short JWT whenever the client asks:
// ConvexProviderWithAuth calls fetchAccessToken, and again before the JWT expires.
const SessionContext = createContext(null);

function useLivedbAuth() {
  const session = useContext(SessionContext);
  const fetchAccessToken = useCallback(async ({ forceRefreshToken }) => {
    if (session === null) return null;
    if (!forceRefreshToken) return session.jwt;
    try {
      return (await post("token", { token: session.token })).jwt;
    } catch {
      return null;
    }
  }, [session]);
  return useMemo(() => ({ isLoading: false, isAuthenticated: session !== null,
    fetchAccessToken }), [session, fetchAccessToken]);
}

function SignIn({ onSession }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const submit = (kind) => async (event) => {
    event.preventDefault();
    try {
      onSession({ ...(await post(kind, { email, password })), email });
    } catch (e) {
      setError(e.message);
    }
  };
  return (
    <form className="card signin" onSubmit={submit("sign_in")}>
      <h2>Sign in</h2>
      <input name="email" placeholder="email" value={email}
        onChange={(e) => setEmail(e.target.value)} />
      <input name="password" type="password" placeholder="password" value={password}
        onChange={(e) => setPassword(e.target.value)} />
      <div className="row">
        <button type="submit">Sign in</button>
        <button type="button" name="signup" onClick={submit("sign_up")}>Sign up</button>
      </div>
      {error && <p className="error">{error}</p>}
    </form>
  );
}

function Chat({ session, onSignOut }) {
  const { isAuthenticated } = useConvexAuth();
  const me = useQuery(api.messages.whoami, {});
  const count = useQuery(api.messages.count, { channel });
  const { results, status, loadMore } = usePaginatedQuery(
    api.messages.page, { channel }, { initialNumItems: 8 });
  const send = useMutation(api.messages.send).withOptimisticUpdate((store, args) =>
    insertAtTop({
      paginatedQuery: api.messages.page,
      argsToMatch: { channel: args.channel },
      localQueryStore: store,
      item: { _id: `pending-${Date.now()}`, _creationTime: Date.now(),
        channel: args.channel, author: session.email, body: args.body, pending: true },
    }));
  const [draft, setDraft] = useState("");
  const submit = (event) => {
    event.preventDefault();
    if (!draft.trim()) return;
    send({ channel, body: draft });
    setDraft("");
  };
  return (
    <div className="card chat">
      <header>
        <h2>#{channel}</h2>
        <span className="who" data-testid="me">
          {isAuthenticated && me ? me : "connecting…"}
        </span>
        <button type="button" onClick={onSignOut}>Sign out</button>
      </header>
      <ol className="messages" data-testid="messages">
        {[...results].reverse().map((m) => (
          <li key={m._id} className={m.pending ? "pending" : ""}>
            <b>{m.author.split("@")[0]}</b>
            <span>{m.body}</span>
            <time>{new Date(m._creationTime).toLocaleTimeString()}</time>
          </li>
        ))}
      </ol>
      {status === "CanLoadMore" && (
        <button type="button" name="more" onClick={() => loadMore(8)}>Load older</button>
      )}
      <form onSubmit={submit} className="row">
        <input name="message" placeholder="Message" value={draft}
          onChange={(e) => setDraft(e.target.value)} />
        <button type="submit">Send</button>
      </form>
      <footer data-testid="count">
        {count === undefined ? "…" : `${count} messages`} · {results.length} shown ·
        {" "}{status}
      </footer>
    </div>
  );
}

function App() {
  const [session, setSession] = useState(null);
  return (
    <SessionContext.Provider value={session}>
      <ConvexProviderWithAuth client={convex} useAuth={useLivedbAuth}>
        <main>
          <h1>livedb <small>× the Convex React client</small></h1>
          {session === null
            ? <SignIn onSession={setSession} />
            : <Chat session={session} onSignOut={() => setSession(null)} />}
        </main>
      </ConvexProviderWithAuth>
    </SessionContext.Provider>
  );
}

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
