// Draws a claim's linked network (cytoscape, cose layout) from the JSON the page embeds.
// Claims confirmed as fraud are red; the claim the page is about is dark and larger; selecting a
// claim opens its page. The same claims are listed under the graph for those who cannot see it.
(function () {
  "use strict";

  function draw() {
    var box = document.getElementById("network");
    var source = document.getElementById("network-data");
    if (!box || !source || typeof cytoscape !== "function") return;
    var data = JSON.parse(source.textContent);
    var elements = [];
    data.nodes.forEach(function (n) {
      var classes = [n.kind];
      if (n.kind === "claim" && n.confirmed_fraud) classes.push("fraud");
      if (n.id === data.claim_id || n.hop === 0) classes.push("centre");
      elements.push({ group: "nodes", data: { id: n.id, label: n.label || n.id, href: n.href || "" }, classes: classes.join(" ") });
    });
    data.edges.forEach(function (e, i) {
      elements.push({ group: "edges", data: { id: "e" + i, source: e.source, target: e.target } });
    });
    var cy = cytoscape({
      container: box,
      elements: elements,
      style: [
        { selector: "node", style: { "label": "data(label)", "font-size": 9, "color": "#222", "text-valign": "bottom", "text-margin-y": 3, "width": 14, "height": 14, "background-color": "#8a94a6" } },
        { selector: "node.claim", style: { "shape": "ellipse", "background-color": "#5b7db1", "width": 18, "height": 18 } },
        { selector: "node.fraud", style: { "background-color": "#c62828", "border-color": "#7f0000", "border-width": 2 } },
        { selector: "node.centre", style: { "background-color": "#1b2a4a", "width": 28, "height": 28, "border-width": 4, "border-color": "#f2a900", "font-weight": "bold" } },
        { selector: "node.centre.fraud", style: { "background-color": "#c62828" } },
        { selector: "node.claimant", style: { "shape": "round-rectangle" } },
        { selector: "node.phone", style: { "shape": "diamond" } },
        { selector: "node.payee_account", style: { "shape": "hexagon" } },
        { selector: "node.address", style: { "shape": "triangle" } },
        { selector: "node.provider", style: { "shape": "star" } },
        { selector: "edge", style: { "width": 1, "line-color": "#b8c0cc", "curve-style": "haystack" } }
      ],
      layout: { name: "cose", animate: false, randomize: false, nodeDimensionsIncludeLabels: true }
    });
    cy.on("tap", "node.claim", function (event) {
      var href = event.target.data("href");
      if (href && href.indexOf("/ui/claims/") === 0 && !event.target.hasClass("centre")) window.location.assign(href);
    });
    box.setAttribute("data-drawn", String(cy.nodes().length));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
