// JSON calls from the pages to their own server. Each sends the page's CSRF token
// (the cookie is HttpOnly, so the token comes from <meta name="csrf-token">) and
// asks for JSON, so that errors come back as {"error": {"message": ...}}.

export class ApiError extends Error {}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

/** POST `body` as JSON to `url`; resolves to the decoded answer, rejects with an ApiError. */
export async function postJson(url, body = {}) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        "Content-Type": "application/json",
        "X-CSRF-Token": csrfToken(),
      },
      body: JSON.stringify(body),
    });
  } catch {
    throw new ApiError("The server could not be reached. Check the connection and try again.");
  }
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(answer?.error?.message ?? `The server answered ${response.status}.`);
  }
  return answer;
}
