// TypeScript works too: types are stripped before the code runs.
// codemode run examples/scripts/restock.ts --config examples/mcp.json
interface Product { sku: string; name: string; stock: number; priceCents: number }

const threshold: number = 5;
const { products } = (await tools.inventory.list_products({})) as { products: Product[] };
const low = products.filter((p) => p.stock < threshold);

// Independent calls run in parallel.
const updated = (await Promise.all(
  low.map((p) => tools.inventory.restock({ sku: p.sku, quantity: threshold * 2 - p.stock })),
)) as Product[];

const cost = updated.reduce((sum, p) => sum + p.priceCents, 0) / 100;
console.log(`restocked ${updated.length} products`);
return { restocked: updated.map((p) => `${p.sku}: ${p.stock}`), unitValue: cost };
