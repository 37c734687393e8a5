/* The web chat page: sends what the visitor types or presses, shows the bot's replies.
   Plain ES5 with XMLHttpRequest, so that old phone browsers run it; nothing is loaded from elsewhere. */
(function () {
  "use strict";
  var body = document.body;
  var log = document.getElementById("log");
  var form = document.getElementById("send");
  var input = document.getElementById("text");
  var button = document.getElementById("send-button");
  var statusLine = document.getElementById("status");
  var texts = JSON.parse(document.getElementById("texts").textContent);
  var embed = body.getAttribute("data-embed") === "1";
  var busy = false;
  var lastFailed = null;

  function api(path) {
    return "/chat/api/" + path + (embed ? "?embed=1" : "");
  }

  function showStatus(text) {
    statusLine.textContent = text || "";
    statusLine.hidden = !text;
  }

  function scrollDown() {
    window.scrollTo(0, document.body.scrollHeight);
    log.scrollTop = log.scrollHeight;
  }

  function dropOldButtons() {
    // Only the latest message's buttons stay: an old button pressed by mistake would move the guide.
    var old = log.querySelectorAll(".choices");
    for (var i = 0; i < old.length; i++) {
      old[i].parentNode.removeChild(old[i]);
    }
  }

  function bubble(who, text) {
    var div = document.createElement("div");
    div.className = "msg " + who;
    div.textContent = text;
    log.appendChild(div);
    return div;
  }

  function showReplies(replies) {
    dropOldButtons();
    for (var i = 0; i < replies.length; i++) {
      var reply = replies[i];
      var last = null;
      for (var j = 0; j < reply.texts.length; j++) {
        last = bubble("bot", reply.texts[j]);
      }
      if (reply.image) {
        var link = document.createElement("a");
        link.href = reply.image;
        link.rel = "noopener noreferrer";
        link.target = "_blank";
        link.textContent = reply.image;
        (last || bubble("bot", "")).appendChild(link);
      }
      if (reply.buttons && reply.buttons.length) {
        var row = document.createElement("div");
        row.className = "choices";
        for (var k = 0; k < reply.buttons.length; k++) {
          row.appendChild(choiceButton(reply.buttons[k]));
        }
        log.appendChild(row);
      }
    }
    scrollDown();
  }

  function choiceButton(choice) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "choice";
    b.textContent = choice.label;
    b.onclick = function () {
      if (busy) { return; }
      bubble("me", choice.label);
      send("message", { payload: choice.payload });
    };
    return b;
  }

  function setBusy(on) {
    busy = on;
    button.disabled = on;
    button.textContent = on ? texts.sending : texts.send;
  }

  function send(path, data) {
    setBusy(true);
    showStatus("");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", api(path), true);
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.timeout = 30000;
    xhr.onreadystatechange = function () {
      if (xhr.readyState !== 4) { return; }
      setBusy(false);
      var answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = null; }
      if (xhr.status === 200 && answer && answer.replies) {
        lastFailed = null;
        showReplies(answer.replies);
        return;
      }
      lastFailed = xhr.status === 0 || xhr.status >= 500 ? { path: path, data: data } : null;
      showStatus(answer && answer.message ? answer.message : texts.error_network);
    };
    xhr.send(JSON.stringify(data));
  }

  form.onsubmit = function (event) {
    if (event && event.preventDefault) { event.preventDefault(); }
    if (busy) { return false; }
    var text = input.value.replace(/^\s+|\s+$/g, "");
    if (!text) {
      if (lastFailed) { send(lastFailed.path, lastFailed.data); } else { showStatus(texts.error_empty); }
      return false;
    }
    bubble("me", text);
    input.value = "";
    send("message", { text: text });
    return false;
  };

  input.onkeydown = function (event) {
    // Enter sends; Shift+Enter makes a new line.
    if ((event.keyCode === 13 || event.key === "Enter") && !event.shiftKey) {
      if (event.preventDefault) { event.preventDefault(); }
      form.onsubmit();
    }
  };

  var hamlet = body.getAttribute("data-hamlet") || "";
  if (hamlet && window.history && window.history.replaceState) {
    // The hamlet is set once; reloading the page should not set it again.
    window.history.replaceState(null, "", window.location.pathname + (embed ? "?embed=1" : ""));
  }
  send("start", hamlet ? { h: hamlet } : {});
})();
