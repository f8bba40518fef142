// Keeps an open record page current without a reload. Every 1.5 s (10 s while the tab is hidden) it
// asks the service whether anything the page shows has changed; the answer is 304 while nothing has.
// When something did, it fetches the page again and swaps in its mailbox, conversation and sends
// sections; the compose form, and whatever is being typed in it, is left alone.
(() => {
  "use strict";
  const main = document.querySelector("[data-live-url]");
  if (!main) return;
  const SECTIONS = ["mailbox", "thread", "sends"];
  let version = main.dataset.liveVersion;

  async function refresh() {
    const page = await fetch(window.location.pathname, {credentials: "same-origin", cache: "no-store"});
    if (!page.ok) return false;
    const fresh = new DOMParser().parseFromString(await page.text(), "text/html");
    for (const id of SECTIONS) {
      const now = document.getElementById(id);
      const next = fresh.getElementById(id);
      if (now && next) now.replaceWith(document.adoptNode(next));
    }
    return true;
  }

  async function check() {
    try {
      const rv = await fetch(main.dataset.liveUrl, {
        credentials: "same-origin", cache: "no-store", headers: {"If-None-Match": `"${version}"`}});
      if (rv.status === 200) {
        const next = (await rv.json()).version;
        if (next !== version && await refresh()) version = next;
      }
    } catch (error) {
      // The service is restarting or the network is away for a moment: the next check tries again.
    }
    window.setTimeout(check, document.hidden ? 10000 : 1500);
  }

  window.setTimeout(check, 1500);
})();
