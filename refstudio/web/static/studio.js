// refstudio web studio: small progressive enhancement. Every page works without this file;
// with it: @name completion, a live cost estimate, live generation cards, a compact Promote.
// No inline script anywhere (CSP script-src 'self'); server HTML arrives already escaped.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function debounce(fn, ms) {
    let timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  function fromHTML(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  // -- Promote: the fields stay folded until the button is pressed once ---------------------
  function enhancePromote(root) {
    $$("form.promote", root).forEach((form) => {
      if (form.dataset.enhanced) return;
      form.dataset.enhanced = "1";
      const fields = $(".promote-fields", form);
      fields.hidden = true;
      // On click, not submit: the browser checks the required Name before "submit" fires.
      $("button[type=submit]", form).addEventListener("click", (event) => {
        if (fields.hidden) {
          event.preventDefault();
          fields.hidden = false;
          $("input[name=name]", form).focus();
        }
      });
    });
  }

  // -- Live cards over server-sent events -------------------------------------------------
  function follow(el) {
    const source = new EventSource(el.dataset.events);
    source.addEventListener("card", (event) => {
      const data = JSON.parse(event.data);
      const fresh = fromHTML(data.html);
      const old = document.getElementById("gen-" + data.id);
      if (old) old.replaceWith(fresh); else el.appendChild(fresh);
      enhancePromote(fresh);
    });
    source.addEventListener("steps", (event) => {
      const data = JSON.parse(event.data);
      const old = document.getElementById("run-" + data.id);
      if (old) old.replaceWith(fromHTML(data.html));
    });
    source.addEventListener("done", () => source.close());
  }

  // -- Compose: @ completion and the estimate ---------------------------------------------
  function composeForm(form) {
    const prompt = $("#prompt", form);
    const list = $("#completions", form);
    const estimate = $("#estimate", form);
    const bound = $("#bound", form);
    let items = [];
    let active = -1;

    function mentionAtCaret() {
      const before = prompt.value.slice(0, prompt.selectionStart);
      const m = /(^|[^\w@])@([A-Za-z][A-Za-z0-9_]{0,15})?$/.exec(before);
      return m ? { start: before.length - (m[2] || "").length - 1, text: m[2] || "" } : null;
    }

    function close() { list.hidden = true; list.replaceChildren(); items = []; active = -1; }

    function choose(index) {
      const mention = mentionAtCaret();
      if (!mention || !items[index]) return close();
      const name = items[index].name;
      const after = prompt.value.slice(prompt.selectionStart);
      const head = prompt.value.slice(0, mention.start) + "@" + name + " ";
      prompt.value = head + after.replace(/^\S*/, "");
      prompt.setSelectionRange(head.length, head.length);
      close();
      prompt.focus();
      refresh();
    }

    function highlight(index) {
      active = index;
      $$("li", list).forEach((li, i) => li.setAttribute("aria-selected", String(i === index)));
    }

    const complete = debounce(async () => {
      const mention = mentionAtCaret();
      if (!mention) return close();
      const res = await fetch(prompt.dataset.complete + "?q=" + encodeURIComponent(mention.text));
      if (!res.ok) return close();
      items = await res.json();
      if (!items.length) return close();
      list.replaceChildren(...items.map((item, i) => {
        const li = document.createElement("li");
        li.setAttribute("role", "option");
        li.id = "completion-" + i;
        if (item.thumb) {
          const img = document.createElement("img");
          img.src = item.thumb; img.alt = ""; li.appendChild(img);
        }
        const label = document.createElement("span");
        label.textContent = "@" + item.name + " (" + item.kind + ")";
        li.appendChild(label);
        li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(i); });
        return li;
      }));
      list.hidden = false;
      highlight(0);
    }, 120);

    prompt.addEventListener("input", complete);
    prompt.addEventListener("blur", () => setTimeout(close, 150));
    prompt.addEventListener("keydown", (e) => {
      if (list.hidden) return;
      if (e.key === "ArrowDown") { e.preventDefault(); highlight((active + 1) % items.length); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight((active - 1 + items.length) % items.length); }
      else if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); choose(Math.max(0, active)); }
      else if (e.key === "Escape") { close(); }
    });

    const refresh = debounce(async () => {
      const params = new URLSearchParams(new FormData(form));
      params.delete("csrf_token");
      const res = await fetch("/api/estimate?" + params.toString());
      if (!res.ok) return;
      const data = await res.json();
      estimate.textContent = data.text;
      bound.replaceChildren(...data.references.map((ref) => {
        const fig = document.createElement("figure");
        fig.className = "bound-ref";
        const span = document.createElement("span");
        span.className = "thumb small";
        if (ref.thumb) {
          const img = document.createElement("img");
          img.src = ref.thumb; img.alt = "@" + ref.name; span.appendChild(img);
        }
        const cap = document.createElement("figcaption");
        cap.textContent = "@" + ref.name + (ref.label ? ":" + ref.label : "");
        fig.append(span, cap);
        return fig;
      }));
    }, 250);
    form.addEventListener("input", refresh);
    form.addEventListener("change", refresh);
  }

  document.addEventListener("DOMContentLoaded", () => {
    enhancePromote(document);
    $$("[data-events]").forEach(follow);
    const compose = $("form#compose");
    if (compose) composeForm(compose);
  });
})();
