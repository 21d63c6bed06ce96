/* global tools */
// codemode quick start: one script, many tool calls, one small answer.
// Tools of every server in examples/mcp.json are async functions under `tools.<server>`.
// Run it: npm run example   (or: codemode run examples/scripts/quickstart.js --config examples/mcp.json)

// 1. Two calls in parallel: the catalog and the shipped orders.
const [{ products }, { orders }] = await Promise.all([
  tools.inventory.list_products({}),
  tools.inventory.search_orders({ status: 'shipped' }),
]);

// 2. Combine them in code instead of sending both lists back to the model.
const bySku = new Map(products.map((p) => [p.sku, p]));
const revenueByCategory = {};
for (const order of orders) {
  for (const item of order.items) {
    const product = bySku.get(item.sku);
    revenueByCategory[product.category] = (revenueByCategory[product.category] ?? 0) + (product.priceCents * item.quantity) / 100;
  }
}
const lowStock = products.filter((p) => p.stock < 5).map((p) => ({ sku: p.sku, name: p.name, stock: p.stock }));
console.log(`${products.length} products, ${orders.length} shipped orders, ${lowStock.length} low on stock`);

// 3. A failing tool call throws a ToolError you can catch; its structuredContent says why.
let orderAttempt;
try {
  await tools.inventory.create_order({ customer: 'ada@example.com', items: [{ sku: 'MN-270', quantity: 5 }] });
  orderAttempt = 'placed';
} catch (err) {
  orderAttempt = { refused: err.message, details: err.structuredContent };
}

// 4. Restock what is short, then return only what matters.
const restocked = [];
for (const item of lowStock.filter((p) => p.stock === 0)) {
  const updated = await tools.inventory.restock({ sku: item.sku, quantity: 10 });
  restocked.push({ sku: updated.sku, stock: updated.stock });
}

return { revenueByCategory, lowStock, orderAttempt, restocked };
